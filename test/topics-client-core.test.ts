import { describe, expect, it } from 'vitest';
import { FormatError } from '../src/client/format/index.js';
import { MemoryBatchQueue } from '../src/client/topics/batch-queue.js';
import { BatchSealer, isSealed, openBatch } from '../src/client/topics/batch-seal.js';
import { HOLD_MS, RecordBatcher } from '../src/client/topics/batcher.js';
import { gzipped } from '../src/client/topics/publisher.js';
import {
  decodeRecords,
  encodeRecords,
  FramingError,
  framedSize,
  LineDecoder,
  RecordDecoder,
} from '../src/client/topics/record-framing.js';
import { ackUrl, isTopicSelector, topicUrl } from '../src/client/topics/topic-url.js';
import { isTopicName } from '../src/protocol/topic-layout.js';
import { ManualClock } from './helpers/manual-clock.js';

const text = (s: string) => new TextEncoder().encode(s);
const strings = (records: readonly Uint8Array[]) => records.map((r) => new TextDecoder().decode(r));
const flushPromises = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('record framing', () => {
  it('frames each record as a 4-byte big-endian length and its bytes, and reads that back', () => {
    const records = [text('a'), new Uint8Array(0), text('hello')];
    const body = encodeRecords(records);
    expect([...body.subarray(0, 5)]).toEqual([0, 0, 0, 1, 0x61]);
    expect(body.byteLength).toBe(framedSize(records));
    expect(strings(decodeRecords(body))).toEqual(['a', '', 'hello']);
  });

  it('cuts records out of pieces split anywhere, an empty record included', () => {
    const body = encodeRecords([text('one'), new Uint8Array(0), text('three')]);
    for (let size = 1; size <= body.byteLength; size++) {
      const decoder = new RecordDecoder(100);
      const out: Uint8Array[] = [];
      for (let at = 0; at < body.byteLength; at += size)
        out.push(...decoder.push(body.subarray(at, at + size)));
      decoder.end();
      expect(strings(out)).toEqual(['one', '', 'three']);
    }
  });

  it('refuses a length over the bound before buffering, and input that ends inside a record', () => {
    const decoder = new RecordDecoder(3);
    expect(() => decoder.push(encodeRecords([text('four')]))).toThrow(FramingError);
    expect(() => decodeRecords(encodeRecords([text('abc')]).subarray(0, 5))).toThrow(/inside a record/);
  });

  it('cuts lines, skipping empty ones, keeping \\r, and skipping a line over the bound up to its end', () => {
    const tooLong: number[] = [];
    const lines = new LineDecoder(5, (n) => tooLong.push(n));
    const out = [
      ...lines.push(text('ab\n\ncd\r\nxyz')),
      ...lines.push(text('123456789\nok')),
      ...lines.end(),
    ];
    expect(strings(out)).toEqual(['ab', 'cd\r', 'ok']);
    expect(tooLong).toHaveLength(1);
  });
});

describe('record batcher (fake time)', () => {
  function batcher(maxBytes: number, maxMs: number) {
    const clock = new ManualClock();
    const batches: string[][] = [];
    const b = new RecordBatcher({
      maxBytes,
      maxMs,
      clock,
      onBatch: async (records) => {
        batches.push(strings(records));
      },
    });
    return { clock, batches, b };
  }

  it('closes a batch before its framed size would pass --batch-bytes', async () => {
    const { b, batches } = batcher(20, 1000);
    for (const r of ['aaaa', 'bbbb', 'cccc', 'dddd']) await b.add(text(r)); // 8 bytes framed each
    expect(batches).toEqual([['aaaa', 'bbbb']]);
    await b.flush();
    expect(batches).toEqual([
      ['aaaa', 'bbbb'],
      ['cccc', 'dddd'],
    ]);
  });

  it('while the sender is busy, a batch of age keeps gathering; it leaves once the sender is free', async () => {
    const clock = new ManualClock();
    const batches: string[][] = [];
    let busy = true;
    const b = new RecordBatcher({
      maxBytes: 1000,
      maxMs: 5,
      clock,
      onBatch: async (records) => {
        batches.push(strings(records));
      },
      senderBusy: () => busy,
    });
    for (const r of ['a', 'b', 'c']) {
      await b.add(text(r));
      clock.advance(20);
      await flushPromises();
    }
    expect(batches).toEqual([]);
    busy = false;
    clock.advance(5);
    await flushPromises();
    expect(batches).toEqual([['a', 'b', 'c']]);
  });

  it('a busy sender holds a batch HOLD_MS at most', async () => {
    const clock = new ManualClock();
    const batches: string[][] = [];
    const b = new RecordBatcher({
      maxBytes: 1000,
      maxMs: 5,
      clock,
      onBatch: async (records) => {
        batches.push(strings(records));
      },
      senderBusy: () => true,
    });
    await b.add(text('a'));
    for (let t = 0; t < HOLD_MS - 50; t += 50) clock.advance(50);
    await flushPromises();
    expect(batches).toEqual([]);
    clock.advance(100);
    await flushPromises();
    expect(batches).toEqual([['a']]);
  });

  it('sends a record larger than the bound alone', async () => {
    const { b, batches } = batcher(10, 1000);
    await b.add(text('x'));
    await b.add(text('a long record'));
    expect(batches).toEqual([['x'], ['a long record']]);
  });

  it('closes a batch --batch-ms after its first record, full or not', async () => {
    const { b, batches, clock } = batcher(1000, 500);
    await b.add(text('first'));
    clock.advance(300);
    await b.add(text('second'));
    await flushPromises();
    expect(batches).toEqual([]);
    clock.advance(200);
    await flushPromises();
    expect(batches).toEqual([['first', 'second']]);
    expect(clock.pending).toBe(0);
    await b.add(text('third'));
    clock.advance(499);
    await flushPromises();
    expect(batches).toHaveLength(1);
    clock.advance(1);
    await flushPromises();
    expect(batches).toEqual([['first', 'second'], ['third']]);
  });

  it('hands batches on one at a time, in order: a slow taker holds the producer back', async () => {
    const clock = new ManualClock();
    const taken: string[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const b = new RecordBatcher({
      maxBytes: 5,
      maxMs: 1000,
      clock,
      onBatch: async (records) => {
        await gate;
        taken.push(strings(records));
      },
    });
    let done = 0;
    const first = b.add(text('a')).then(() => done++);
    await flushPromises();
    expect(done).toBe(0);
    release();
    await first;
    await b.add(text('b'));
    await b.flush();
    expect(taken).toEqual([['a'], ['b']]);
  });
});

describe('memory batch queue', () => {
  it('numbers keys from 0 and makes put wait for room past its bound (never drops)', async () => {
    const queue = new MemoryBatchQueue('dev.run1', 10);
    const a = await queue.put(new Uint8Array(8), 1);
    expect(a.key).toBe('dev.run1:0');
    let putDone = false;
    const b = queue.put(new Uint8Array(8), 1).then((batch) => {
      putDone = true;
      return batch;
    });
    await flushPromises();
    expect(putDone).toBe(false);
    expect(await queue.next()).toBe(a);
    await queue.remove(a);
    expect((await b).key).toBe('dev.run1:1');
    queue.close();
    await queue.remove(await b);
    expect(await queue.next()).toBeUndefined();
  });
});

describe('sealed batches', () => {
  const key = { kind: 'key' as const, key: new Uint8Array(32).fill(7) };

  it('seals a batch as one stream and opens it into its records; a wrong key fails as wrong-key', async () => {
    const sealer = new BatchSealer(key);
    const sealed = await sealer.seal([text('t=21.5'), text('t=21.6')]);
    expect(isSealed(sealed)).toBe(true);
    expect(strings(await openBatch(sealed, key))).toEqual(['t=21.5', 't=21.6']);
    const other = { kind: 'key' as const, key: new Uint8Array(32).fill(8) };
    await expect(openBatch(sealed, other)).rejects.toMatchObject({ code: 'wrong-key' });
    const cut = sealed.subarray(0, sealed.byteLength - 1);
    await expect(openBatch(cut, key)).rejects.toBeInstanceOf(FormatError);
  });

  it('gives each batch its own stream nonce but one salt, so a passphrase is stretched once', async () => {
    const sealer = new BatchSealer({ kind: 'passphrase', passphrase: 'pw' }, { log2N: 10 });
    const a = await sealer.seal([text('x')]);
    const b = await sealer.seal([text('x')]);
    // Header: salt at 11..27, stream nonce at 27..43.
    expect(a.subarray(11, 27)).toEqual(b.subarray(11, 27));
    expect(a.subarray(27, 43)).not.toEqual(b.subarray(27, 43));
    expect(a).not.toEqual(b);
    expect(strings(await openBatch(b, { kind: 'passphrase', passphrase: 'pw' }))).toEqual(['x']);
  });
});

describe('topic URLs and gzip', () => {
  it('joins a name to --server under /_/topics/, takes a full URL as it is, and refuses a bad name', () => {
    expect(topicUrl('fleet/device-1', 'http://h:1/base/').href).toBe(
      'http://h:1/base/_/topics/fleet/device-1',
    );
    expect(topicUrl('fleet/*', 'http://h:1').pathname).toBe('/_/topics/fleet/*');
    expect(topicUrl('https://x/_/topics/a?sig=1', undefined).search).toBe('?sig=1');
    expect(() => topicUrl('a/../b', 'http://h')).toThrow(/not a topic name/);
    expect(() => topicUrl('a:ack', 'http://h')).toThrow(/not a topic name/);
    expect(ackUrl(new URL('http://h/_/topics/fleet/*?sig=1'), 'g').href).toBe(
      'http://h/_/topics/fleet/*:ack?sig=1&group=g',
    );
    expect(isTopicName('fleet/*')).toBe(false);
    expect(isTopicSelector('fleet/*')).toBe(true);
    expect(isTopicName('a/b/c/d/e/f/g/h/i')).toBe(false);
  });

  it('gzips a batch that compresses, and leaves one that would grow', async () => {
    const many = encodeRecords(Array.from({ length: 200 }, (_, i) => text(`t=21.${i % 10} device=17`)));
    const packed = await gzipped(many);
    expect(packed!.byteLength).toBeLessThan(many.byteLength / 4);
    const back = new Uint8Array(
      await new Response(
        new Blob([packed! as BlobPart]).stream().pipeThrough(new DecompressionStream('gzip')),
      ).arrayBuffer(),
    );
    expect(back).toEqual(many);
    expect(await gzipped(encodeRecords([text('x')]))).toBeUndefined();
  });
});
