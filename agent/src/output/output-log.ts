/**
 * One append-only, binary-safe output log per job (serial captures are jobs too). Writers append
 * synchronously; readers read positionally at their own offsets (the newest appends from memory)
 * and wait for growth on an in-process signal, so there is no polling and no per-reader buffer.
 */
import {
  appendFileSync,
  closeSync,
  fstatSync,
  openSync,
  read as readAsync,
  readFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';
import { punchHead } from './punch-hole.js';

const read = promisify(readAsync);

/** Which stream of the process a byte range came from. */
export type StreamName = 'stdout' | 'stderr';

/** File names inside a job directory. */
export const LOG_FILE = 'output.log';
export const INDEX_FILE = 'output.idx';
/** The first offset still held, once the log's head was dropped (a serial capture's bound). */
const START_FILE = 'output.start';

/** A run of bytes from one stream, starting at `offset`; it lasts until the next segment. */
export interface Segment {
  offset: number;
  stream: StreamName;
}

/** The index file's line for a stream change (see OutputLog). */
export function indexLine(seg: Segment): string {
  return `${seg.offset} ${seg.stream} ${Date.now()}\n`;
}

/**
 * What a writer on another thread (the output pump) appended to a log's file, in order: the
 * bytes are in the file and the stream changes in the index before the log is told.
 */
export interface AppendReport {
  /** The log's length after these appends. */
  length: number;
  /** Stream changes among them, oldest first. */
  segments: Segment[];
  /** The bytes appended since the last report, if the writer sent them. */
  data?: Uint8Array;
}

/**
 * Bytes of the newest appends a log keeps in memory while it has readers, counted by the
 * buffers they hold. A follower that keeps up (a serial console, a job's output at the speed of
 * its reader) is served from here, without a read on the thread pool, whose round trip was most
 * of a serial line's time inside the agent; one that lags further reads the file.
 */
export const LOG_TAIL_BYTES = 256 * 1024;

/** An append kept in memory, from `offset`. */
interface TailChunk {
  offset: number;
  data: Buffer;
}

/** A piece read back from the log. */
export interface LogPiece {
  offset: number;
  data: Buffer;
  stream: StreamName;
}

/**
 * The log of one job. The index file records only where the stream changes (with a timestamp),
 * so a job that writes 1 GiB to stdout costs one index line, not one per write.
 */
export class OutputLog {
  #fd: number | null;
  #length: number;
  #closed: boolean;
  #readers = 0;
  #start: number;
  readonly #segments: Segment[];
  readonly #waiters = new Set<() => void>();
  /** The newest appends, oldest first, while there are readers (see LOG_TAIL_BYTES). */
  #tail: TailChunk[] = [];
  #tailHeld = 0;

  private constructor(
    readonly dir: string,
    fd: number | null,
    length: number,
    segments: Segment[],
    closed: boolean,
    start = 0,
  ) {
    this.#start = start;
    this.#fd = fd;
    this.#length = length;
    this.#segments = segments;
    this.#closed = closed;
  }

  /** Creates an empty log for a new job. */
  static create(dir: string): OutputLog {
    const fd = openSync(join(dir, LOG_FILE), 'wx+');
    try {
      appendFileSync(join(dir, INDEX_FILE), '');
    } catch (err) {
      // A full disk can refuse the second file: the first one's descriptor must not leak.
      closeSync(fd);
      throw err;
    }
    return new OutputLog(dir, fd, 0, [], false);
  }

  /**
   * Opens the log of a job from an earlier agent run, read-only. Its length is what reached the
   * file; an index line that points past it (a crash between the two writes) is ignored.
   */
  static openExisting(dir: string): OutputLog {
    const fd = openSync(join(dir, LOG_FILE), 'r');
    let length: number;
    try {
      const { size } = fstatSync(fd);
      length = size;
    } finally {
      closeSync(fd);
    }
    const segments = parseIndex(readOptional(join(dir, INDEX_FILE))).filter((s) => s.offset <= length);
    return new OutputLog(dir, null, length, segments, true, startOf(dir, length));
  }

  /** Bytes in the log so far. */
  get length(): number {
    return this.#length;
  }

  /** The first offset still held: 0 unless the log's head was dropped by trimTo(). */
  get start(): number {
    return this.#start;
  }

  /** Bytes the log holds on disk: its length less the dropped head. */
  get storedBytes(): number {
    return this.#length - this.#start;
  }

  /**
   * Drops everything before `offset` (which the caller chose at a record boundary): readers
   * that were behind it skip to it, and the file's blocks before it are freed in place, so
   * every offset stays what it was. The new start is saved first, so a crash in between never
   * lets a reader see the freed (zeroed) range.
   */
  async trimTo(offset: number): Promise<void> {
    if (offset <= this.#start) return;
    if (offset > this.#length)
      throw new RangeError(`cannot trim ${this.dir} to ${offset}: only ${this.#length} bytes`);
    this.#start = offset;
    writeJsonAtomic(join(this.dir, START_FILE), offset);
    // Stream changes before the start are no longer needed to read anything held.
    let first = 0;
    while (first + 1 < this.#segments.length && this.#segments[first + 1]!.offset <= offset) first++;
    if (first > 0) this.#segments.splice(0, first);
    await punchHead(join(this.dir, LOG_FILE), offset);
  }

  /** Bytes the log keeps in memory for its readers (at most LOG_TAIL_BYTES). */
  get memoryBytes(): number {
    return this.#tailHeld;
  }

  /** No more bytes will be appended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Readers currently holding the log open. */
  get readers(): number {
    return this.#readers;
  }

  /**
   * Appends bytes from one stream and wakes every waiting reader. The bytes are in the file
   * before any reader sees them; while there are readers the log also keeps `data` itself
   * (see LOG_TAIL_BYTES), so the caller must not change it afterwards.
   */
  append(stream: StreamName, data: Buffer): void {
    if (this.#closed) throw new Error(`output log ${this.dir} is closed`);
    if (data.length === 0) return;
    const fd = this.#fd!;
    const last = this.#segments.at(-1);
    if (last?.stream !== stream) {
      const seg = { offset: this.#length, stream };
      this.#segments.push(seg);
      appendFileSync(join(this.dir, INDEX_FILE), indexLine(seg));
    }
    let written = 0;
    while (written < data.length) {
      written += writeSync(fd, data, written, data.length - written);
    }
    if (this.#readers > 0) this.#keep(this.#length, data);
    this.#length += data.length;
    this.#wake();
  }

  /**
   * Takes note of appends another thread made to this log's file (see AppendReport) and wakes
   * every waiting reader. Bytes the report does not carry are read from the file; the tail then
   * starts again after them.
   */
  appended(report: AppendReport): void {
    if (this.#closed) throw new Error(`output log ${this.dir} is closed`);
    if (report.length < this.#length)
      throw new RangeError(`output log ${this.dir} cannot shrink from ${this.#length} to ${report.length}`);
    for (const seg of report.segments) this.#segments.push(seg);
    const added = report.length - this.#length;
    if (this.#readers > 0 && added > 0) {
      const data = report.data;
      if (data?.length === added) {
        this.#keep(this.#length, Buffer.from(data.buffer, data.byteOffset, data.length));
      } else {
        this.#tail = [];
        this.#tailHeld = 0;
      }
    }
    if (report.length === this.#length) return;
    this.#length = report.length;
    this.#wake();
  }

  /** Keeps an append in the tail, dropping the oldest ones past the bound. */
  #keep(offset: number, data: Buffer): void {
    // A small chunk cut from a big read would hold the whole read: count what it keeps alive.
    const held = data.buffer.byteLength;
    if (held > LOG_TAIL_BYTES) {
      // Too big to keep: the tail starts again after it (it must hold every byte from its start).
      this.#tail = [];
      this.#tailHeld = 0;
      return;
    }
    this.#tail.push({ offset, data });
    this.#tailHeld += held;
    while (this.#tailHeld > LOG_TAIL_BYTES) this.#tailHeld -= this.#tail.shift()!.data.buffer.byteLength;
  }

  /** The index of the tail chunk holding `offset`, or -1 if the tail does not reach back to it. */
  #tailIndexOf(offset: number): number {
    const tail = this.#tail;
    if (tail.length === 0 || offset < tail[0]!.offset) return -1;
    // The last chunk starting at or before `offset`: a serial log's tail holds thousands.
    let lo = 0;
    let hi = tail.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (tail[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Marks the log complete; idempotent. Readers drain what is left and then see the end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#releaseFdIfIdle();
    this.#wake();
  }

  /** Registers a reader; the returned function unregisters it (idempotent). */
  acquire(): () => void {
    if (this.#fd === null) this.#fd = openSync(join(this.dir, LOG_FILE), 'r');
    this.#readers += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#readers -= 1;
      if (this.#readers === 0) {
        this.#tail = [];
        this.#tailHeld = 0;
      }
      this.#releaseFdIfIdle();
    };
  }

  /**
   * Reads up to `max` bytes at `offset`, never across a stream boundary. Returns an empty piece
   * at the end of the log, and before its start (see trimTo; also when the head was dropped
   * while this read was under way, since those bytes may be zeros now). The caller must hold
   * `acquire()`. `into` gives the buffer to read into (a message encoded around it, so the bytes
   * are copied once on their way out); a read that comes up short returns a view of it.
   */
  async read(
    offset: number,
    max: number,
    into?: (length: number, stream: StreamName) => Buffer,
  ): Promise<LogPiece> {
    const fd = this.#fd;
    if (fd === null) throw new Error('read without acquire()');
    const { stream, end } = this.#segmentAt(offset);
    const want = offset < this.#start ? 0 : Math.max(0, Math.min(max, end - offset, this.#length - offset));
    if (want === 0) return { offset, data: Buffer.alloc(0), stream };
    const kept = this.#tailIndexOf(offset);
    if (kept >= 0) return { offset, data: this.#fromTail(kept, offset, want, into?.(want, stream)), stream };
    const buf = into ? into(want, stream) : Buffer.allocUnsafe(want);
    const { bytesRead } = await read(fd, buf, 0, want, offset);
    if (offset < this.#start) return { offset, data: Buffer.alloc(0), stream };
    return { offset, data: bytesRead === want ? buf : buf.subarray(0, bytesRead), stream };
  }

  /**
   * `want` bytes at `offset` from the tail, starting in chunk `index` (the tail holds every byte
   * appended since its first chunk): a view when they lie in that one chunk, else copied into
   * `into` or a new buffer, so a reader catching up gets whole pieces, not one per append.
   */
  #fromTail(index: number, offset: number, want: number, into: Buffer | undefined): Buffer {
    const first = this.#tail[index]!;
    const start = offset - first.offset;
    if (!into && start + want <= first.data.length) return first.data.subarray(start, start + want);
    const out = into ?? Buffer.allocUnsafe(want);
    let copied = first.data.copy(out, 0, start, Math.min(first.data.length, start + want));
    for (let i = index + 1; copied < want; i++) {
      const next = this.#tail[i]!.data;
      copied += next.copy(out, copied, 0, Math.min(next.length, want - copied));
    }
    return out;
  }

  /**
   * Resolves when the log is longer than `offset`, is closed, or `signal` aborts. The waiter is
   * removed on every path, so an abandoned follower leaves nothing behind.
   */
  waitForGrowth(offset: number, signal: AbortSignal): Promise<void> {
    if (this.#length > offset || this.#closed || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Number of readers waiting for growth (for leak checks and metrics). */
  get waiting(): number {
    return this.#waiters.size;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #segmentAt(offset: number): { stream: StreamName; end: number } {
    const segs = this.#segments;
    // Binary search: the last segment starting at or before offset.
    let lo = 0;
    let hi = segs.length - 1;
    let idx = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (segs[mid]!.offset <= offset) {
        idx = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    const seg = segs[idx];
    const next = segs[idx + 1];
    return { stream: seg?.stream ?? 'stdout', end: next ? next.offset : Number.POSITIVE_INFINITY };
  }

  #releaseFdIfIdle(): void {
    if (this.#closed && this.#readers === 0 && this.#fd !== null) {
      closeSync(this.#fd);
      this.#fd = null;
    }
  }
}

function parseIndex(text: string): Segment[] {
  const segments: Segment[] = [];
  for (const line of text.split('\n')) {
    const [off, stream] = line.split(' ');
    const offset = Number(off);
    if (!Number.isSafeInteger(offset) || (stream !== 'stdout' && stream !== 'stderr')) continue;
    segments.push({ offset, stream });
  }
  return segments;
}

/**
 * Where a log whose head was dropped starts. A start file that cannot be read (a crash mid-write
 * is ruled out by the atomic write, so this is damage) counts as "nothing held": the bytes
 * before an unknown start may be zeros, which no reader must take for output.
 */
function startOf(dir: string, length: number): number {
  try {
    const start = readJsonIfPresent<unknown>(join(dir, START_FILE));
    if (start === undefined) return 0;
    if (typeof start === 'number' && Number.isSafeInteger(start) && start >= 0 && start <= length)
      return start;
  } catch {
    // Damaged: as below.
  }
  return length;
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
