/**
 * The last lines of a job's stderr, kept in memory while it runs so the record of a job that
 * failed can say why without anyone reading its whole log (the report shows them).
 */

/** Most bytes kept. */
export const STDERR_TAIL_BYTES = 4096;
/** Most lines kept. */
export const STDERR_TAIL_LINES = 20;

/** A tail's bytes, and whether bytes before them were dropped. */
export interface StderrTailSnapshot {
  data: Uint8Array;
  cut: boolean;
}

/** A bounded tail of a byte stream. */
export class StderrTail {
  #buf = Buffer.alloc(0);
  /** True once bytes were dropped from the front. */
  #cut = false;

  /** Adds a chunk; only the last STDERR_TAIL_BYTES are kept. */
  push(chunk: Buffer): void {
    if (chunk.length >= STDERR_TAIL_BYTES) {
      this.#buf = Buffer.from(chunk.subarray(chunk.length - STDERR_TAIL_BYTES));
      this.#cut = true;
      return;
    }
    const joined = Buffer.concat([this.#buf, chunk]);
    if (joined.length > STDERR_TAIL_BYTES) this.#cut = true;
    this.#buf =
      joined.length > STDERR_TAIL_BYTES ? joined.subarray(joined.length - STDERR_TAIL_BYTES) : joined;
  }

  /** What the tail holds, to be carried to another thread (see take()). */
  snapshot(): StderrTailSnapshot {
    return { data: new Uint8Array(this.#buf), cut: this.#cut };
  }

  /** Holds what another thread's tail held (its snapshot()) instead of its own bytes. */
  take(snapshot: StderrTailSnapshot): void {
    this.#buf = Buffer.from(snapshot.data);
    this.#cut = snapshot.cut;
  }

  /** The last STDERR_TAIL_LINES whole lines (a cut first line is dropped); '' when there was none. */
  text(): string {
    let lines = this.#buf.toString('utf8').replace(/\n$/, '').split('\n');
    // The first line is a fragment once bytes were dropped (and may start mid-character).
    if (this.#cut && lines.length > 1) lines = lines.slice(1);
    const tail = lines.slice(-STDERR_TAIL_LINES).join('\n');
    return tail.trim() === '' ? '' : tail;
  }
}
