/**
 * Makes the image's extent on the target read as zeros before a zero-skipping write. Skipping an
 * all-zero block is only correct if the medium already holds zeros there: an ext4 inode table or
 * a partition gap that kept the previous image's bytes is corruption. One BLKZEROOUT request
 * (`blkdiscard --zeroout`) does it: instant where the device can write zeroes itself (loop
 * devices, most SSDs), and the kernel falls back to writing zero pages where it cannot — correct,
 * and still cheaper than pushing the zeros through the decompressor and the page cache.
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

/** Zeroes the first `bytes` of `target` (a block device or a regular file). */
export async function zeroTarget(target: string, bytes: number, signal?: AbortSignal): Promise<void> {
  const st = statSync(target);
  if (st.isFile()) {
    // A file medium: cut it to nothing and back, which leaves a sparse, all-zero file.
    const size = st.size;
    truncateSync(target, 0);
    truncateSync(target, Math.max(size, bytes));
    return;
  }
  const length = Math.ceil(bytes / SECTOR_BYTES) * SECTOR_BYTES;
  try {
    await run('blkdiscard', ['--zeroout', '--offset', '0', '--length', String(length), target], { signal });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `could not zero ${target} before a zero-skipping write: ${stderr || (err as Error).message}; flash with --no-skip-zeros or give a .bmap`,
    );
  }
}
