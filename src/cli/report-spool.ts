import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../client/errors.js';
import { type BatchQueue, type InputMark, Signal } from '../client/topics/batch-queue.js';
import type { OutgoingBatch } from '../client/topics/publisher.js';
import { processAlive } from './process-alive.js';

/** Options of `ReportSpool.open`. */
export interface SpoolOptions {
  readonly dir: string;
  /** Bytes of batch files kept at most; past it the oldest batch is dropped. */
  readonly maxBytes: number;
  /** `--device`: the id in new keys; default the one this spool has, else a new random one. */
  readonly device?: string;
  /** A new random device id (when neither the flag nor the spool names one). */
  readonly newDeviceId: () => string;
  /** One line for stderr (a dropped batch). */
  readonly warn: (text: string) => void;
  /** This process's pid, for the lock. */
  readonly pid: number;
}

/** What the spool dir remembers across runs. */
interface SpoolState {
  readonly device: string;
  /** Every sequence below this may have been used: a new run starts here. */
  readonly reserved: number;
  readonly dropped: number;
  /** Where the input of the last batch kept ended (`--follow`). */
  readonly mark?: InputMark;
  /** The sequence of the batch `mark` came with. */
  readonly markSeq?: number;
}

/** One batch file, indexed; its body stays on disk until it is sent. */
interface SpooledBatch {
  readonly seq: number;
  readonly key: string;
  readonly records: number;
  readonly path: string;
  readonly bytes: number;
  readonly mark?: InputMark;
}

/** Sequences reserved per write of the state file: one fsync per 64 batches, not per batch. */
const RESERVE_BLOCK = 64;
const STATE_FILE = 'state.json';
const LOCK_FILE = 'lock';
const BATCH_FILE = /^b-(\d{16})\.batch$/;

/**
 * The offline spool of `edgepipe report --spool DIR`: each batch is written to a file of its own and
 * fsynced before it is sent, and removed once the server has it; leftovers of an earlier run go first, in
 * order. The device id and the sequences used persist in `state.json`, so a restarted reporter never
 * reuses an idempotency key (a key the server remembers would make it drop a new batch as a replay). Past
 * `maxBytes` the oldest batch not in flight is dropped, with a warning and a counter. A lock file holding
 * the pid keeps two reporters off one spool (a SIGKILLed one's lock is taken over).
 */
export class ReportSpool implements BatchQueue {
  private readonly batches: SpooledBatch[] = [];
  private bytes = 0;
  private nextSeq: number;
  private state: SpoolState;
  private inFlight: string | undefined;
  private closed = false;
  private readonly changed = new Signal();

  private constructor(
    private readonly options: SpoolOptions,
    state: SpoolState,
  ) {
    this.state = state;
    this.nextSeq = state.reserved;
  }

  /** Opens (or creates) the spool dir, takes its lock and indexes what an earlier run left. */
  static open(options: SpoolOptions): ReportSpool {
    const { dir } = options;
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new UsageError(`--spool ${dir}: ${(error as Error).message}`);
    }
    lock(dir, options.pid);
    const saved = readState(dir);
    const device = options.device ?? saved?.device ?? options.newDeviceId();
    const spool = new ReportSpool(options, {
      device,
      reserved: saved?.reserved ?? 0,
      dropped: saved?.dropped ?? 0,
      ...(saved?.mark ? { mark: saved.mark, markSeq: saved.markSeq ?? -1 } : {}),
    });
    spool.index();
    spool.reserve();
    return spool;
  }

  /** The device id of new keys. */
  get device(): string {
    return this.state.device;
  }

  /** Batches dropped because the spool was full, over every run. */
  get dropped(): number {
    return this.state.dropped;
  }

  /**
   * Where the input of the last batch this spool kept ended (`--follow` reads on from there): from the
   * state file, or from a leftover batch written after it (a kill between the two writes).
   */
  get mark(): InputMark | undefined {
    return this.state.mark;
  }

  /** Batches waiting (leftovers included). */
  get waiting(): number {
    return this.batches.length;
  }

  async put(body: Uint8Array, records: number, mark?: InputMark): Promise<OutgoingBatch> {
    if (this.nextSeq >= this.state.reserved) this.reserve();
    const seq = this.nextSeq++;
    const key = `${this.state.device}:${seq}`;
    const head = new TextEncoder().encode(`${JSON.stringify({ key, records, ...(mark ? { mark } : {}) })}\n`);
    const size = head.byteLength + body.byteLength;
    this.makeRoom(size);
    const path = join(this.options.dir, `b-${String(seq).padStart(16, '0')}.batch`);
    writeDurably(path, [head, body]);
    syncDir(this.options.dir);
    this.batches.push({ seq, key, records, path, bytes: size });
    this.bytes += size;
    if (mark) {
      // After the batch file: a kill between the two leaves the mark in the batch, which `index` reads.
      this.state = { ...this.state, mark, markSeq: seq };
      this.writeState();
    }
    this.changed.wake();
    return { key, body, records };
  }

  async next(signal?: AbortSignal): Promise<OutgoingBatch | undefined> {
    for (;;) {
      const first = this.batches[0];
      if (first) {
        this.inFlight = first.key;
        const batch = this.load(first);
        if (batch) return batch;
        continue;
      }
      if (this.closed) return undefined;
      await this.changed.wait(signal);
    }
  }

  async remove(batch: OutgoingBatch): Promise<void> {
    const at = this.batches.findIndex((b) => b.key === batch.key);
    if (this.inFlight === batch.key) this.inFlight = undefined;
    if (at === -1) return;
    const [gone] = this.batches.splice(at, 1);
    this.bytes -= gone!.bytes;
    // No fsync of the directory: a removal lost to a crash only sends the batch again, which its key makes
    // harmless.
    rmSync(gone!.path, { force: true });
    this.changed.wake();
  }

  close(): void {
    this.closed = true;
    this.changed.wake();
  }

  /** Gives up the lock (at exit; a killed run's lock is taken over by the next). */
  release(): void {
    rmSync(join(this.options.dir, LOCK_FILE), { force: true });
  }

  /** Drops the oldest batches not in flight until `size` more bytes fit (or nothing more can go). */
  private makeRoom(size: number): void {
    const before = this.state.dropped;
    while (this.bytes + size > this.options.maxBytes) {
      const at = this.batches.findIndex((b) => b.key !== this.inFlight);
      if (at === -1) return;
      const [gone] = this.batches.splice(at, 1);
      this.bytes -= gone!.bytes;
      rmSync(gone!.path, { force: true });
      this.state = { ...this.state, dropped: this.state.dropped + 1 };
      this.options.warn(
        `edgepipe: spool full (${this.options.maxBytes} bytes): dropped batch ${gone!.key} (${gone!.records} records); ${this.state.dropped} dropped so far`,
      );
    }
    if (this.state.dropped !== before) this.writeState();
  }

  /** Reserves the next block of sequences in the state file, durably, before any of them is used. */
  private reserve(): void {
    this.state = { ...this.state, reserved: this.nextSeq + RESERVE_BLOCK };
    this.writeState();
  }

  private writeState(): void {
    const path = join(this.options.dir, STATE_FILE);
    writeDurably(path, [new TextEncoder().encode(`${JSON.stringify(this.state)}\n`)]);
    syncDir(this.options.dir);
  }

  /** Indexes the batch files left by an earlier run and removes half-written ones. */
  private index(): void {
    const found: SpooledBatch[] = [];
    for (const name of readdirSync(this.options.dir)) {
      const path = join(this.options.dir, name);
      if (name.endsWith('.tmp')) {
        rmSync(path, { force: true });
        continue;
      }
      const match = BATCH_FILE.exec(name);
      if (!match) continue;
      const seq = Number(match[1]);
      const head = readHead(path);
      if (!head) {
        this.options.warn(`edgepipe: ${path} is not a batch file this edgepipe wrote; removed`);
        rmSync(path, { force: true });
        continue;
      }
      found.push({
        seq,
        key: head.key,
        records: head.records,
        path,
        bytes: head.bytes,
        ...(head.mark ? { mark: head.mark } : {}),
      });
      // A state file older than its batches (it cannot be, but a copied dir might): never reuse a sequence.
      if (seq >= this.nextSeq) this.nextSeq = seq + 1;
    }
    found.sort((a, b) => a.seq - b.seq);
    for (const batch of found) {
      this.batches.push(batch);
      this.bytes += batch.bytes;
    }
    // A batch newer than the state's mark: the run was killed between writing the batch and the state.
    const newest = found.findLast((batch) => batch.mark);
    if (newest?.mark && newest.seq > (this.state.markSeq ?? -1)) {
      this.state = { ...this.state, mark: newest.mark, markSeq: newest.seq };
    }
  }

  private load(batch: SpooledBatch): OutgoingBatch | undefined {
    try {
      const bytes = readFileSync(batch.path);
      const newline = bytes.indexOf(0x0a);
      return { key: batch.key, records: batch.records, body: new Uint8Array(bytes.subarray(newline + 1)) };
    } catch (error) {
      this.options.warn(`edgepipe: cannot read ${batch.path} (${(error as Error).message}); skipped`);
      this.batches.shift();
      this.bytes -= batch.bytes;
      return undefined;
    }
  }
}

/** Writes a file's pieces to `<path>.tmp`, fsyncs it and renames it over `path`: whole or absent. */
function writeDurably(path: string, pieces: readonly Uint8Array[]): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (const piece of pieces) {
      let at = 0;
      while (at < piece.byteLength) at += writeSync(fd, piece, at);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** fsync of a directory, so a new or renamed entry survives a power cut. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readState(dir: string): SpoolState | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, STATE_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const state = JSON.parse(text) as Partial<SpoolState>;
    if (typeof state.device === 'string' && Number.isSafeInteger(state.reserved)) {
      return {
        device: state.device,
        reserved: state.reserved!,
        dropped: Number(state.dropped ?? 0),
        ...(isMark(state.mark) ? { mark: state.mark, markSeq: Number(state.markSeq ?? -1) } : {}),
      };
    }
  } catch {
    // Fall through: written atomically, so this is not our file.
  }
  throw new UsageError(`--spool: ${join(dir, STATE_FILE)} is not a spool state this edgepipe wrote`);
}

/** A batch file's header line and size, or undefined when it has none. */
function isMark(value: unknown): value is InputMark {
  const mark = value as Partial<InputMark> | undefined;
  return Number.isSafeInteger(mark?.inode) && Number.isSafeInteger(mark?.offset);
}

function readHead(
  path: string,
): { key: string; records: number; bytes: number; mark?: InputMark } | undefined {
  try {
    const bytes = readFileSync(path);
    const newline = bytes.indexOf(0x0a);
    if (newline === -1) return undefined;
    const head = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as {
      key?: unknown;
      records?: unknown;
      mark?: unknown;
    };
    if (typeof head.key !== 'string' || typeof head.records !== 'number') return undefined;
    return {
      key: head.key,
      records: head.records,
      bytes: bytes.byteLength,
      ...(isMark(head.mark) ? { mark: head.mark } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Takes the spool's lock: a live reporter's is refused, a dead one's taken over. */
function lock(dir: string, pid: number): void {
  const path = join(dir, LOCK_FILE);
  for (let tries = 0; tries < 3; tries++) {
    try {
      writeFileSync(path, `${pid}\n`, { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new UsageError(`--spool ${dir}: ${(error as Error).message}`);
      }
    }
    const holder = Number(readFileSync(path, 'utf8').trim());
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== pid && processAlive(holder)) {
      throw new UsageError(`--spool ${dir} is in use by another reporter (pid ${holder})`);
    }
    rmSync(path, { force: true });
  }
  throw new UsageError(`--spool ${dir}: could not take its lock`);
}
