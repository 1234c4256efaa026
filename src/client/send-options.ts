import type { IntegrityError } from './errors.js';
import type { PlainSource } from './plain-source.js';
import type { TransferOptions } from './transfer-options.js';
import type { UploadMode } from './upload-mode.js';
import type { SendEncoding } from './wire-format.js';

/** Everything `send` needs; the CLI and the page build it. */
export interface SendOptions extends TransferOptions {
  readonly source: PlainSource;
  readonly encoding: SendEncoding;
  /**
   * What an earlier, interrupted run of this transfer sent (its file as it was then, its sealed header):
   * when the pipe still has that run's dropped sender, the transfer continues at the broker's offset with
   * these instead of starting over. `changed` is thrown instead when the file is no longer what it was.
   */
  readonly continuing?: {
    readonly source: PlainSource;
    readonly encoding: SendEncoding;
    readonly changed?: IntegrityError;
  };
  /** How the body goes up (default `{ kind: 'stream' }`); see `UploadMode`. */
  readonly upload?: UploadMode;
}
