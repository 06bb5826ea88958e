/**
 * Frees the disk blocks of a file's head while keeping its size and every later offset, so a
 * log that is read by absolute offsets can drop its oldest bytes in place (fallocate(2)
 * FALLOC_FL_PUNCH_HOLE through util-linux's `fallocate`, which Node has no binding for).
 * ext4, xfs, btrfs and tmpfs support it; elsewhere the call fails and nothing is freed.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Filesystem block size the hole is aligned to: a partial block cannot be freed anyway. */
const BLOCK_BYTES = 4096;

/** Frees the blocks wholly inside [0, end) of `path`; resolves with the bytes punched. */
export async function punchHead(path: string, end: number): Promise<number> {
  const length = Math.floor(end / BLOCK_BYTES) * BLOCK_BYTES;
  if (length <= 0) return 0;
  await run('fallocate', ['--punch-hole', '--offset', '0', '--length', String(length), path], {
    timeout: 30_000,
  });
  return length;
}
