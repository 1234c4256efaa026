import type { TopicEvent } from '../client/topics/topic-events.js';
import { systemClock } from '../client/transfer-events.js';
import { clientFetch } from './client-fetch.js';
import { type CommonTransferFlags, requestHeaders, retryOf } from './transfer-options.js';

/** One topic request, answer included: batches and read answers are small, so this is generous. */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * What `report` and `consume` hand the client core alike: headers, fetch, a retry budget that never runs
 * out, the request timeout, and notices on stderr.
 */
export function topicRequestOptions(
  flags: Pick<CommonTransferFlags, 'header' | 'token' | 'retryBase' | 'retryCap' | 'retryFor'>,
  signal: AbortSignal,
  notice: (text: string) => void,
) {
  return {
    headers: requestHeaders(flags),
    fetch: clientFetch(),
    retry: retryOf(flags, 0),
    clock: systemClock,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    signal,
    onEvent: (event: TopicEvent) => {
      // The first failure and every tenth: an outage of minutes should not fill the log.
      if (event.type === 'retrying' && (event.attempt === 1 || event.attempt % 10 === 0)) {
        notice(`${event.reason}; trying again in ${event.inMs} ms (try ${event.attempt})`);
      } else if (event.type === 'notice') notice(event.text);
    },
  };
}
