/**
 * One append-only JSON-lines journal with a size bound: when the next line would take the file
 * past `maxBytes`, the file becomes `<name>.1.jsonl` (replacing the previous old one) and a new
 * file starts. At most twice `maxBytes` is ever kept, and readers see the old file, then the new.
 *
 * Appends are synchronous (`writeSync` to the page cache), like the job output logs: the order of
 * lines is the order of events, and a reader on the same thread never sees half a rotation.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** A journal's current and rotated file. */
export class JournalFile {
  readonly path: string;
  readonly oldPath: string;
  readonly #maxBytes: number;
  #fd: number | null = null;
  #size = 0;

  /** `name` without extension, e.g. `vdut-a` → `<dir>/vdut-a.jsonl` and `<dir>/vdut-a.1.jsonl`. */
  constructor(dir: string, name: string, maxBytes: number) {
    this.path = join(dir, `${name}.jsonl`);
    this.oldPath = join(dir, `${name}.1.jsonl`);
    this.#maxBytes = maxBytes;
  }

  /** Appends one entry as one line, rotating first when the line would not fit. */
  append(entry: object): void {
    const line = Buffer.from(`${JSON.stringify(entry)}\n`);
    if (this.#fd === null) this.#open();
    if (this.#size > 0 && this.#size + line.length > this.#maxBytes) this.#rotate();
    let written = 0;
    while (written < line.length) written += writeSync(this.#fd!, line, written, line.length - written);
    this.#size += line.length;
  }

  /** Every line kept, oldest first (the rotated file, then the current one); no trailing ''. */
  lines(): string[] {
    const text = readOptional(this.oldPath) + readOptional(this.path);
    const lines = text.split('\n');
    // A crash mid-append can leave a partial last line; it is dropped, not misread.
    lines.pop();
    return lines;
  }

  /** Closes the file; the next append opens it again. Idempotent. */
  close(): void {
    if (this.#fd === null) return;
    closeSync(this.#fd);
    this.#fd = null;
  }

  #open(): void {
    this.#fd = openSync(this.path, 'a+');
    this.#size = fstatSync(this.#fd).size;
    // An agent killed mid-append leaves a partial line; ending it keeps the next entry whole.
    const last = Buffer.alloc(1);
    if (this.#size > 0 && readSync(this.#fd, last, 0, 1, this.#size - 1) === 1 && last[0] !== 0x0a) {
      this.#size += writeSync(this.#fd, '\n');
    }
  }

  #rotate(): void {
    this.close();
    renameSync(this.path, this.oldPath);
    this.#open();
  }
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
