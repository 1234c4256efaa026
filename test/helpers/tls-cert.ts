import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './processes.js';

/** A throwaway self-signed certificate for 127.0.0.1 (openssl), as PEM files. */
export async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'edgepipe-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  if (made.code !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  return { cert, key };
}
