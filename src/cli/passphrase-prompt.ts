import { openSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { UsageError } from '../client/errors.js';

/**
 * Asks for a passphrase on the terminal without echoing it. It reads /dev/tty, not stdin, which may be the
 * data being sent.
 */
export async function promptPassphrase(question: string): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r');
  } catch {
    throw new UsageError('no terminal to ask for the passphrase: set EDGEPIPE_PASSPHRASE or use --key-file');
  }
  const input = new ReadStream(fd);
  input.setRawMode(true);
  process.stderr.write(question);
  return new Promise<string>((resolve, reject) => {
    let typed = '';
    const finish = (error?: Error) => {
      input.setRawMode(false);
      input.destroy();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed);
    };
    input.on('data', (data: Buffer) => {
      for (const char of data.toString('utf8')) {
        if (char === '\r' || char === '\n') return finish();
        if (char === '\u0003') return finish(new UsageError('cancelled'));
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
        else if (typed.length < 1024) typed += char;
      }
    });
  });
}
