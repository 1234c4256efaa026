// Running a command the way the bench's client rows measure it: its output collected, its CPU from bash.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * Waits for `child` to exit and collects its stdout and stderr.
 * @param {import('node:child_process').ChildProcess} child spawned with stdout and stderr piped
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string }>}
 */
export async function outputOf(child) {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const [code] = await once(child, 'exit');
  return { code, stdout, stderr };
}

/**
 * Runs `command` in bash under `time`; resolves with its stdout and its CPU seconds (user + sys, children
 * included), as a user would measure a client.
 * @param {string} command
 * @param {Record<string, string>} [env] added to this process's environment
 * @returns {Promise<{ stdout: string, cpu: number }>}
 */
export async function timed(command, env = {}) {
  const child = spawn('bash', ['-c', `TIMEFORMAT='%3U %3S'; time ( ${command} )`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const { code, stdout, stderr } = await outputOf(child);
  if (code !== 0) throw new Error(`${command} exited with ${code}: ${stderr}`);
  // The timing is bash's last line; the command's own stderr, if any, comes before it.
  const times = /(\d+\.\d+) (\d+\.\d+)\s*$/.exec(stderr);
  if (!times) throw new Error(`no timing from bash for ${command}: ${stderr}`);
  return { stdout, cpu: Number(times[1]) + Number(times[2]) };
}
