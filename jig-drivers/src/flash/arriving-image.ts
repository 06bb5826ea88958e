/**
 * An image file that is still being written: the agent starts a first flash while the image is
 * being uploaded into its cache, and the flasher reads the file as it grows, up to its announced
 * size. The bytes are hashed as they are read and compared with the announced SHA-256 at the end,
 * so what was decompressed and written is exactly the image the user uploaded, whatever the
 * upload itself concludes. A file that stops growing ends the flash instead of hanging it.
 */

import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { JigletError } from '../../../protocol/src/errors.js';

/** What is announced about an image that is still arriving. */
export interface ArrivingImage {
  /** Its size once complete. */
  size: number;
  /** The SHA-256 (hex) of its bytes. */
  sha256: string;
}

/** How long the file may stop growing before the flash gives up on it. */
export const ARRIVING_STALL_MS = 60_000;
/** Read size: as for a cached image (flash-dut.ts). */
const READ_BYTES = 1024 * 1024;
/**
 * Growth is noticed through inotify (fs.watch); this re-check covers file systems without it.
 * It only bounds how late a missed event is seen, it orders nothing.
 */
const RECHECK_MS = 250;

/** Options of the readers below. */
export interface ArrivingOptions {
  signal?: AbortSignal;
  /** See ARRIVING_STALL_MS. */
  stallMs?: number;
}

/** The arriving file as a stream, and whether its bytes matched the announced SHA-256. */
export interface ArrivingReader {
  /** The image's bytes in order, as they arrive; errors when the file stalls or its hash differs. */
  stream: Readable;
  /**
   * Resolves once the stream was read to the announced size and the bytes hashed to the
   * announced SHA-256; rejects when they did not, or when the stream ended before that.
   */
  checked: Promise<void>;
}

/** Waits until the file holds at least `bytes` (its header, before the format is inspected). */
export async function waitForArrivingBytes(
  path: string,
  bytes: number,
  opts: ArrivingOptions = {},
): Promise<void> {
  const growth = new GrowthWatch(path, opts);
  try {
    const handle = await open(path, 'r');
    try {
      for (let size = (await handle.stat()).size; size < bytes; size = (await handle.stat()).size) {
        await growth.wait(size, bytes);
      }
    } finally {
      await handle.close();
    }
  } finally {
    growth.close();
  }
}

/** Reads `path` as it grows to `image.size`, checking `image.sha256` at the end. */
export function readArrivingImage(
  path: string,
  image: ArrivingImage,
  opts: ArrivingOptions = {},
): ArrivingReader {
  let settle!: { resolve: () => void; reject: (err: unknown) => void };
  const checked = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // Nobody may be awaiting it when the stream fails first; the stream reports that failure.
  checked.catch(() => {});
  const stream = Readable.from(chunks(path, image, opts, settle), { highWaterMark: 2 });
  return { stream, checked };
}

async function* chunks(
  path: string,
  image: ArrivingImage,
  opts: ArrivingOptions,
  settle: { resolve: () => void; reject: (err: unknown) => void },
): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let position = 0;
  let outcome: unknown = new JigletError(
    'JIGLET_E_DATA_LOSS',
    'the image was not read to its end, so its SHA-256 was not checked',
  );
  // Made inside the try: a watch that cannot start (the link already gone) must still settle `checked`.
  let growth: GrowthWatch | undefined;
  try {
    growth = new GrowthWatch(path, opts);
    const handle = await open(path, 'r');
    try {
      while (position < image.size) {
        const want = Math.min(READ_BYTES, image.size - position);
        const buffer = Buffer.allocUnsafe(want);
        const { bytesRead } = await handle.read(buffer, 0, want, position);
        if (bytesRead === 0) {
          await growth.wait(position, image.size);
          continue;
        }
        const data = bytesRead === want ? buffer : buffer.subarray(0, bytesRead);
        hash.update(data);
        position += bytesRead;
        yield data;
      }
    } finally {
      await handle.close();
    }
    const actual = hash.digest('hex');
    if (actual !== image.sha256) {
      throw new JigletError(
        'JIGLET_E_DATA_LOSS',
        `the uploaded image hashes to ${actual}, not ${image.sha256}: it changed or was damaged on its way; the medium holds a bad image, flash it again`,
      );
    }
    outcome = undefined;
  } catch (err) {
    outcome = err;
    throw err;
  } finally {
    growth?.close();
    if (outcome === undefined) settle.resolve();
    else settle.reject(outcome);
  }
}

/** Wakes a reader when the file grows; says when it has stalled. */
class GrowthWatch {
  readonly #signal: AbortSignal | undefined;
  readonly #stallMs: number;
  readonly #watcher: FSWatcher;
  #wake: (() => void) | undefined;
  #lastSize = -1;
  #lastGrowthAt = Date.now();

  constructor(path: string, opts: ArrivingOptions) {
    this.#signal = opts.signal;
    this.#stallMs = opts.stallMs ?? ARRIVING_STALL_MS;
    this.#watcher = watch(path, { persistent: false }, () => this.#wake?.());
    // An error (the file's directory removed) only ends the events; the re-check goes on.
    this.#watcher.on('error', () => {});
  }

  /** Waits for the file (now `size` bytes of `total`) to change; throws when it stalled or on abort. */
  async wait(size: number, total: number): Promise<void> {
    const now = Date.now();
    if (size !== this.#lastSize) {
      this.#lastSize = size;
      this.#lastGrowthAt = now;
    }
    this.#signal?.throwIfAborted();
    const left = this.#lastGrowthAt + this.#stallMs - now;
    if (left <= 0) {
      throw new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `the image stopped arriving at ${size} of ${total} bytes (nothing new for ${Math.round(this.#stallMs / 1000)} s): its upload was interrupted; upload it again, or flash once it is cached`,
      );
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.min(RECHECK_MS, left));
      this.#signal?.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
    this.#signal?.throwIfAborted();
  }

  close(): void {
    this.#wake?.();
    this.#watcher.close();
  }
}
