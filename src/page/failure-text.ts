import { TransferError } from '../client/errors.js';
import { AddressError } from './pipe-address.js';

/** A failure in the words the user reads. */
export function failureText(error: unknown, signal: AbortSignal): string {
  if (signal.aborted) return 'Cancelled.';
  if (error instanceof AddressError) return error.message;
  if (error instanceof TransferError) return `Failed: ${error.message}.`;
  return `Failed: ${error instanceof Error ? error.message : String(error)}.`;
}
