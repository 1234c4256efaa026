import { installPipingServer, startPipingServer } from '../../bench/piping-server.js';

/** A real piping-server process of the test's own (the protocol's origin), on 127.0.0.1 and a free port. */
export interface TestPipingServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** SIGKILLs it; resolves once the process is gone. */
  kill(): Promise<void>;
}

/**
 * Starts piping-server 1.12.9 and resolves once it answers `/version`. The first call on a machine installs it
 * from npm into bench/.work (shared with the bench, gitignored) and may take a while: call this from a
 * `beforeAll` with a generous timeout. Without network access it throws `PipingServerInstallError`, with
 * npm's message: a test that needs the reference server fails rather than skips.
 */
export async function startTestPipingServer(): Promise<TestPipingServer> {
  const entry = await installPipingServer({ log: (line) => process.stderr.write(`${line}\n`) });
  const server = await startPipingServer({ entry });
  return { url: server.url, kill: server.kill };
}
