import type { Config } from '../config.js';

/** Whether `host` keeps the server to this machine. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The start-up warning of an open server that others can reach; `undefined` when there is nothing to say. */
export function openModeWarning(config: Config): string | undefined {
  if (config.auth.mode !== 'open' || isLoopback(config.server.host)) return undefined;
  return (
    'warning: auth.mode is open: anyone who can reach this server can send and receive on any path ' +
    '(set auth.mode to signed or token, see README "Access control and limits")'
  );
}
