/**
 * Reads the written ranges back from the target and compares them with the digests taken while
 * writing. Skipped blocks (zeros, bmap-unmapped) were not written and are not read back.
 *
 * The reads must come from the medium, not from the page cache the writes went through. Node has
 * no posix_fadvise or ioctl, so for a block device we run `blockdev --flushbufs` (BLKFLSBUF: write
 * back, then drop the device's cached pages) and read through a fresh descriptor. Closing the last
 * descriptor drops that cache too, but udev's probe — triggered by our close after writing — may
 * hold the device open just then, so the explicit flush is what counts. When that is not
 * possible — a regular-file target, or util-linux missing — the reads may be served from the
 * cache and only prove what the kernel holds; the caller is told so through `onWarning`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { JigletError } from '../../../protocol/src/errors.js';
import type { WriteTarget } from './block-writer.js';
import type { WrittenData, WrittenRange } from './written-ranges.js';

/** Size of one read-back. */
export const VERIFY_READ_BYTES = 4 * 1024 * 1024;
/** Deadline of `blockdev --flushbufs`, which writes back whatever is still dirty first. */
const FLUSHBUFS_TIMEOUT_MS = 120_000;

const execFileAsync = promisify(execFile);

/** Options of `verifyWritten`. */
export interface VerifyOptions {
  /** Called with bytes read back so far. */
  onProgress?: (bytesRead: number) => void;
  /** Called when the read-back may come from the page cache. */
  onWarning?: (message: string) => void;
  /** Stops between reads. */
  signal?: AbortSignal;
}

/** The one-line warning printed when verification is switched off. */
export const NO_VERIFY_WARNING =
  'WARNING: verification is OFF (--no-verify): nothing was read back; a bad card or a lost write goes unnoticed';

/** Drops the block device's cached pages (BLKFLSBUF via util-linux); false when it could not. */
async function dropDeviceCache(devicePath: string, onWarning?: (message: string) => void): Promise<boolean> {
  try {
    await execFileAsync('blockdev', ['--flushbufs', devicePath], { timeout: FLUSHBUFS_TIMEOUT_MS });
    return true;
  } catch (err) {
    onWarning?.(
      `could not drop the page cache of ${devicePath} (blockdev --flushbufs: ${(err as Error).message.trim()}); ` +
        'verification may read cached data instead of the medium',
    );
    return false;
  }
}

/**
 * Reads `written.ranges` back from `target` and compares digests. Every written byte lies in
 * exactly one range, so when every range matches the whole does: the overall SHA-256 (the
 * summary's) is not taken over the read-back a second time, one hash pass fewer per byte.
 * Throws JIGLET_E_DRIVER_FAILED naming the first range that differs ("verify failed: /dev/sdb bytes 0–67108863 differ …").
 */
export async function verifyWritten(
  target: WriteTarget,
  written: WrittenData,
  options: VerifyOptions = {},
): Promise<void> {
  if (target.kind === 'block') await dropDeviceCache(target.path, options.onWarning);
  else options.onWarning?.(`${target.path} is a regular file: verification may read the page cache`);
  const handle = await open(target.path, 'r');
  // Double-buffered: the next piece is read from the medium while this one is hashed.
  const buffers = [Buffer.allocUnsafe(VERIFY_READ_BYTES), Buffer.allocUnsafe(VERIFY_READ_BYTES)];
  let pending: Promise<Buffer> | undefined;
  try {
    const pieces = readPieces(written.ranges)[Symbol.iterator]();
    const start = (index: number): Promise<Buffer> | undefined => {
      const next = pieces.next();
      if (next.done) return undefined;
      const { position, want } = next.value;
      return readFully(handle, target.path, buffers[index % 2]!, want, position);
    };
    let bytesRead = 0;
    let index = 0;
    pending = start(index);
    for (const range of written.ranges) {
      const hash = createHash(range.algorithm);
      for (let at = 0; at < range.length; ) {
        options.signal?.throwIfAborted();
        const data = await pending!;
        pending = start(++index);
        hash.update(data);
        at += data.length;
        bytesRead += data.length;
        options.onProgress?.(bytesRead);
      }
      if (hash.digest('hex') !== range.digest) {
        const last = range.offset + range.length - 1;
        throw new JigletError(
          'JIGLET_E_DRIVER_FAILED',
          `verify failed: ${target.path} bytes ${range.offset}-${last} differ from what was written ` +
            '(a failing or fake-capacity card, or something else wrote to it)',
        );
      }
    }
  } finally {
    // A read still in flight must end before the handle closes; its error adds nothing.
    await pending?.catch(() => undefined);
    await handle.close();
  }
}

/** The reads of a verification, in order: each range cut into pieces of at most one buffer. */
function* readPieces(ranges: readonly WrittenRange[]): Generator<{ position: number; want: number }> {
  for (const range of ranges) {
    for (let at = 0; at < range.length; at += VERIFY_READ_BYTES) {
      yield { position: range.offset + at, want: Math.min(VERIFY_READ_BYTES, range.length - at) };
    }
  }
}

/** Reads `want` bytes at `position` into `buffer` (retrying short reads); the bytes read. */
async function readFully(
  handle: FileHandle,
  targetPath: string,
  buffer: Buffer,
  want: number,
  position: number,
): Promise<Buffer> {
  for (let got = 0; got < want; ) {
    const { bytesRead } = await handle.read(buffer, got, want - got, position + got);
    if (bytesRead === 0) {
      throw new JigletError(
        'JIGLET_E_DRIVER_FAILED',
        `verify failed: ${targetPath} ends at offset ${position + got}, before the written data does`,
      );
    }
    got += bytesRead;
  }
  return buffer.subarray(0, want);
}
