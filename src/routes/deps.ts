import type { Broker } from '../broker/types.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';

/** What every route gets from `createApp`. */
export interface RouteDeps {
  readonly config: Config;
  readonly broker: Broker;
  readonly clock: Clock;
}
