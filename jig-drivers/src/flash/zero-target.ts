/**
 * Makes the image's extent on the target read as zeros before a zero-skipping write. Skipping an
 * all-zero block is only correct if the medium already holds zeros there: an ext4 inode table or
 * a partition gap that kept the previous image's bytes is corruption. One BLKZEROOUT request
 * (`blkdiscard --zeroout`) does it: instant where the device can write zeroes itself (loop
 * devices, most SSDs), and the kernel falls back to writing zero pages where it cannot — correct,
 * and still cheaper than pushing the zeros through the decompressor and the page cache.
 *
 * When the image's size is not known up front (a .gz whose size field is only an estimate, an
 * image still being uploaded), the zeroed extent grows ahead of the writer instead
 * (`ZeroedExtent.extend`), so a zero block is only ever skipped where zeros are known to be.
 */
import { execFile } from 'node:child_process';
import { readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { JigletError } from '../../../protocol/src/errors.js';

const run = promisify(execFile);
/** blkdiscard wants whole logical sectors. */
const SECTOR_BYTES = 512;

/**
 * True when `target` can be zeroed without writing every byte: a regular file (truncation), or
 * a block device whose queue advertises write-zeroes (loop devices, NVMe, most SSDs). Elsewhere
 * (USB card readers) zeroing costs a full write, and writing the zero blocks is no dearer.
 */
export function canZeroCheaply(target: string, sysRoot = '/sys'): boolean {
  const st = statSync(target);
  if (st.isFile()) return true;
  if (!st.isBlockDevice()) return false;
  const major = Math.floor(st.rdev / 256) & 0xfff;
  const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
  const dev = join(sysRoot, 'dev', 'block', `${major}:${minor}`);
  for (const queue of [join(dev, 'queue'), join(dev, '..', 'queue')]) {
    try {
      return Number(readFileSync(join(queue, 'write_zeroes_max_bytes'), 'utf8').trim()) > 0;
    } catch {
      // A partition has no queue of its own: its disk's is one level up.
    }
  }
  return false;
}

/** How much the target is zeroed ahead of the writer at a time, once the first extent is used up. */
export const ZERO_AHEAD_BYTES = 128 * 1024 * 1024;

/** The start of the target that reads as zeros, and a way to make more of it do so. */
export interface ZeroedExtent {
  /** Bytes from offset 0 that read as zeros (Infinity: all of it, e.g. a truncated file). */
  readonly bytes: number;
  /** Makes at least [0, end) read as zeros (nothing written there yet); may zero more. */
  extend(end: number): Promise<void>;
}

/**
 * Zeroes the first `bytes` of `target` (a block device or a regular file) and returns the zeroed
 * extent, which `extend` pushes further in ZERO_AHEAD_BYTES steps up to `deviceBytes`.
 */
export async function zeroTarget(
  target: string,
  bytes: number,
  opts: { deviceBytes?: number | null; signal?: AbortSignal } = {},
): Promise<ZeroedExtent> {
  const st = statSync(target);
  if (st.isFile()) {
    // A file medium: cut it to nothing and back, which leaves a sparse, all-zero file; past its
    // end a file reads as a hole, so all of it counts as zeroed.
    const size = st.size;
    truncateSync(target, 0);
    truncateSync(target, Math.max(size, bytes));
    return { bytes: Number.POSITIVE_INFINITY, extend: async () => {} };
  }
  const limit = opts.deviceBytes ?? Number.POSITIVE_INFINITY;
  let zeroed = 0;
  const zeroTo = async (end: number, held: boolean): Promise<void> => {
    const to = Math.min(limit, Math.ceil(end / SECTOR_BYTES) * SECTOR_BYTES);
    if (to <= zeroed) return;
    await zeroRange(target, zeroed, to - zeroed, held, opts.signal);
    zeroed = to;
  };
  await zeroTo(bytes, false);
  return {
    get bytes() {
      return zeroed;
    },
    // Called while the writer holds the device open exclusively (block-writer.ts openTarget).
    extend: (end) =>
      end <= zeroed ? Promise.resolve() : zeroTo(Math.max(end, zeroed + ZERO_AHEAD_BYTES), true),
  };
}

/**
 * BLKZEROOUT of [offset, offset + length) of a block device; both are whole sectors. blkdiscard
 * opens the device O_EXCL, so while the writer `held` it so (nobody can mount it meanwhile) it
 * must be told to skip that check.
 */
async function zeroRange(
  target: string,
  offset: number,
  length: number,
  held: boolean,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await run(
      'blkdiscard',
      [
        '--zeroout',
        ...(held ? ['--force'] : []),
        '--offset',
        String(offset),
        '--length',
        String(length),
        target,
      ],
      { signal },
    );
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `could not zero ${target} before a zero-skipping write: ${stderr || (err as Error).message}; flash with --no-skip-zeros or give a .bmap`,
    );
  }
}
