// The tunnel's stream format (docs/tunnel-protocol.md) through its writer and reader, fed in random pieces:
// every record back in order, plain and sealed; forgeries, reorderings, other connections' streams and a
// mode mismatch refused with a reason.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../src/client/transfer-events.js';
import { RecordReader } from '../src/client/tunnel/record-reader.js';
import { RecordWriter } from '../src/client/tunnel/record-writer.js';
import { type TunnelKeys, tunnelKeys, tunnelSalt } from '../src/client/tunnel/tunnel-keys.js';
import { RecordType } from '../src/client/tunnel/tunnel-records.js';
import { startStream } from '../src/client/tunnel/tunnel-stream-header.js';

const ID = '0123456789abcdef0123456789abcdef';
const OTHER_ID = 'fedcba9876543210fedcba9876543210';

/** Writes `records` through a RecordWriter and returns the stream's bytes. */
async function written(
  keys: TunnelKeys | undefined,
  records: ReadonlyArray<readonly [RecordType, Uint8Array?]>,
  id = ID,
): Promise<Uint8Array> {
  const writer = new RecordWriter(await startStream(keys, id, 'up'), 1 << 30, systemClock);
  const collected = (async () => {
    const parts: Uint8Array[] = [];
    const reader = writer.readable.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
    }
    return Buffer.concat(parts);
  })();
  for (const [type, payload] of records) await writer.write(type, payload);
  return collected;
}

/** Feeds `bytes` to a reader in random pieces; the records it hands on, DATA pieces joined. */
async function read(
  keys: TunnelKeys | undefined,
  bytes: Uint8Array,
  id = ID,
): Promise<Array<[number, Buffer]>> {
  const out: Array<[number, Buffer]> = [];
  const reader = new RecordReader(keys, id, 'up', async (type, payload) => {
    const last = out.at(-1);
    if (type === RecordType.data && last?.[0] === RecordType.data && !(last as { closed?: boolean }).closed) {
      last[1] = Buffer.concat([last[1], payload]);
    } else {
      out.push([type, Buffer.from(payload)]);
    }
  });
  let at = 0;
  while (at < bytes.length) {
    const size = Math.min(bytes.length - at, 1 + Math.floor(Math.random() * 9000));
    await reader.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

const keysOf = (passphraseOrKey: string | Uint8Array) =>
  tunnelKeys(
    typeof passphraseOrKey === 'string'
      ? { kind: 'passphrase', passphrase: passphraseOrKey }
      : { kind: 'key', key: passphraseOrKey },
    '/tun/x',
  );

describe('tunnel records', () => {
  it.each([
    ['plain', undefined],
    ['sealed', 'key'],
  ] as const)('%s: every record comes back in order, whatever the pieces', async (_mode, sealed) => {
    const keys = sealed ? await keysOf(new Uint8Array(32).fill(7)) : undefined;
    const big = randomBytes(200_000);
    const small = randomBytes(3);
    const bytes = await written(keys, [
      [RecordType.open],
      [RecordType.data, small],
      [RecordType.ping],
      [RecordType.data, big],
      [RecordType.fin],
    ]);
    for (let round = 0; round < 20; round++) {
      const records = await read(keys, bytes);
      const types = records.map(([type]) => type);
      expect(types).toEqual([
        RecordType.open,
        RecordType.data,
        RecordType.ping,
        RecordType.data,
        RecordType.fin,
      ]);
      expect(records[1]![1].equals(small)).toBe(true);
      expect(records[3]![1].equals(big)).toBe(true);
    }
  });

  it('a sealed stream does not open as another connection, under another key, or with a byte changed', async () => {
    const keys = await keysOf(new Uint8Array(32).fill(1));
    const bytes = await written(keys, [[RecordType.data, Buffer.from('secret')], [RecordType.fin]]);
    await expect(read(keys, bytes, OTHER_ID)).rejects.toThrow(/does not verify/);
    await expect(read(await keysOf(new Uint8Array(32).fill(2)), bytes)).rejects.toThrow(/does not verify/);
    const altered = Buffer.from(bytes);
    altered[altered.length - 3]! ^= 1;
    await expect(read(keys, altered)).rejects.toThrow(/does not authenticate/);
  });

  it('a sealed stream with its records swapped or its last record cut off is refused or left unfinished', async () => {
    const keys = await keysOf(new Uint8Array(32).fill(3));
    const header = (await startStream(keys, ID, 'up')).header.byteLength;
    const one = Buffer.from('first record');
    const two = Buffer.from('other record');
    const bytes = Buffer.from(
      await written(keys, [[RecordType.data, one], [RecordType.data, two], [RecordType.fin]]),
    );
    const recordBytes = 4 + 1 + one.length + 16;
    const swapped = Buffer.concat([
      bytes.subarray(0, header),
      bytes.subarray(header + recordBytes, header + 2 * recordBytes),
      bytes.subarray(header, header + recordBytes),
      bytes.subarray(header + 2 * recordBytes),
    ]);
    await expect(read(keys, swapped)).rejects.toThrow(/does not authenticate/);
    // Without its FIN the reader is not done: the connection treats the end as a break, never as a close.
    const cut = bytes.subarray(0, header + 2 * recordBytes);
    const reader = new RecordReader(keys, ID, 'up', async () => {});
    await reader.push(cut);
    expect(reader.done).toBe(false);
  });

  it('refuses plaintext where it expects a sealed stream, and the other way round, saying which', async () => {
    const keys = await keysOf(new Uint8Array(32).fill(4));
    const plain = await written(undefined, [[RecordType.fin]]);
    const sealed = await written(keys, [[RecordType.fin]]);
    await expect(read(keys, plain)).rejects.toThrow(/does not encrypt/);
    await expect(read(undefined, sealed)).rejects.toThrow(/give the same --passphrase or --key-file/);
    await expect(read(undefined, Buffer.from('GET / HTTP/1.1\r\n\r\n'))).rejects.toThrow(
      /not a tunnel stream/,
    );
  });

  it('refuses a record longer than the protocol allows, and bytes after the last record', async () => {
    const header = (await startStream(undefined, ID, 'up')).header;
    const huge = Buffer.concat([header, Buffer.from([0x7f, 0, 0, 0, RecordType.ping])]);
    await expect(read(undefined, huge)).rejects.toThrow(/record of 2130706432 bytes/);
    const after = Buffer.concat([await written(undefined, [[RecordType.fin]]), Buffer.from([0, 0, 0, 1, 2])]);
    await expect(read(undefined, after)).rejects.toThrow(/after its last record/);
  });

  it('derives the passphrase salt from the namespace: two tunnels never share a key', () => {
    expect(Buffer.from(tunnelSalt('/a')).equals(Buffer.from(tunnelSalt('/b')))).toBe(false);
    expect(tunnelSalt('/a').byteLength).toBe(16);
  });
});
