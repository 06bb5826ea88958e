/**
 * One append-only, binary-safe output log per job (serial captures are jobs too). Writers append
 * synchronously; readers read positionally at their own offsets and wait for growth on an
 * in-process signal, so there is no polling and no per-reader buffer.
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

const read = promisify(readAsync);

/** Which stream of the process a byte range came from. */
export type StreamName = 'stdout' | 'stderr';

/** File names inside a job directory. */
export const LOG_FILE = 'output.log';
const INDEX_FILE = 'output.idx';

/** A run of bytes from one stream, starting at `offset`; it lasts until the next segment. */
interface Segment {
  offset: number;
  stream: StreamName;
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
  readonly #segments: Segment[];
  readonly #waiters = new Set<() => void>();

  private constructor(
    readonly dir: string,
    fd: number | null,
    length: number,
    segments: Segment[],
    closed: boolean,
  ) {
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
    return new OutputLog(dir, null, length, segments, true);
  }

  /** Bytes in the log so far. */
  get length(): number {
    return this.#length;
  }

  /** No more bytes will be appended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Readers currently holding the log open. */
  get readers(): number {
    return this.#readers;
  }

  /** Appends bytes from one stream and wakes every waiting reader. */
  append(stream: StreamName, data: Buffer): void {
    if (this.#closed) throw new Error(`output log ${this.dir} is closed`);
    if (data.length === 0) return;
    const fd = this.#fd!;
    const last = this.#segments.at(-1);
    if (last?.stream !== stream) {
      const seg = { offset: this.#length, stream };
      this.#segments.push(seg);
      appendFileSync(join(this.dir, INDEX_FILE), `${seg.offset} ${stream} ${Date.now()}\n`);
    }
    let written = 0;
    while (written < data.length) {
      written += writeSync(fd, data, written, data.length - written);
    }
    this.#length += data.length;
    this.#wake();
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
      this.#releaseFdIfIdle();
    };
  }

  /**
   * Reads up to `max` bytes at `offset`, never across a stream boundary. Returns an empty piece
   * at the end of the log. The caller must hold `acquire()`.
   */
  async read(offset: number, max: number): Promise<LogPiece> {
    const fd = this.#fd;
    if (fd === null) throw new Error('read without acquire()');
    const { stream, end } = this.#segmentAt(offset);
    const want = Math.max(0, Math.min(max, end - offset, this.#length - offset));
    if (want === 0) return { offset, data: Buffer.alloc(0), stream };
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await read(fd, buf, 0, want, offset);
    return { offset, data: bytesRead === want ? buf : buf.subarray(0, bytesRead), stream };
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

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
