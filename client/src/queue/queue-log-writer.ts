/**
 * Copies a running job's output into the queue, in batches: one row per 64 KiB or per quarter
 * second, whichever comes first, so a chatty job costs the database a few inserts a second. While
 * the database is away the output is held (up to a bound) and written when it is back; beyond the
 * bound it is dropped with a note, since the agent's own job log still has every byte.
 */
import type { QueueStore } from './queue-store.js';

const BATCH_BYTES = 64 * 1024;
const BATCH_MS = 250;
/** Output held for a database that cannot be reached. */
const HELD_MAX_BYTES = 16 * 1024 * 1024;

export class QueueLogWriter {
  readonly #store: QueueStore;
  readonly #jobId: string;
  readonly #attempt: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The one flush in flight; flushes never overlap, so rows keep their order. */
  #flushing: Promise<void> = Promise.resolve();

  constructor(store: QueueStore, jobId: string, attempt: number) {
    this.#store = store;
    this.#jobId = jobId;
    this.#attempt = attempt;
  }

  /** Adds output. */
  write(data: Buffer): void {
    if (this.#pendingBytes + data.length > HELD_MAX_BYTES) {
      this.#dropped += data.length;
      return;
    }
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    if (this.#pendingBytes >= BATCH_BYTES) this.#flushSoon(0);
    else this.#flushSoon(BATCH_MS);
  }

  /** Adds a line of the worker's own, marked so it cannot be mistaken for the job's output. */
  note(line: string): void {
    this.write(Buffer.from(`[jiglet-queue ${new Date().toISOString()}] ${line}\n`));
  }

  /**
   * Writes what is left, retrying while the database is away until `giveUpAt`; resolves when it
   * is in the database or the time is up.
   */
  async close(giveUpAt = Date.now() + 30_000): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (;;) {
      if (await this.#flush()) return;
      if (Date.now() > giveUpAt) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  #flushSoon(ms: number): void {
    if (this.#timer && ms > 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush().then((ok) => {
        if (!ok) this.#flushSoon(1000);
      });
    }, ms);
  }

  /** Resolves true when nothing is left to write. */
  #flush(): Promise<boolean> {
    const flushed = this.#flushing.then(async () => {
      if (this.#pendingBytes === 0 && this.#dropped === 0) return true;
      const batch = this.#pending;
      const bytes = this.#pendingBytes;
      const dropped = this.#dropped;
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#dropped = 0;
      const note =
        dropped > 0
          ? [
              Buffer.from(
                `[jiglet-queue] ${dropped} bytes of output were not copied while the queue was unreachable; the agent's job log has them\n`,
              ),
            ]
          : [];
      try {
        await this.#store.appendLog(this.#jobId, this.#attempt, Buffer.concat([...batch, ...note]));
        return this.#pendingBytes === 0;
      } catch {
        // Put back in front of whatever arrived meanwhile; write() bounds how much is held.
        this.#pending = [...batch, ...this.#pending];
        this.#pendingBytes += bytes;
        this.#dropped += dropped;
        return false;
      }
    });
    this.#flushing = flushed.then(() => undefined);
    return flushed;
  }
}
