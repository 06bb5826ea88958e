/**
 * The files qemu-host owns besides its processes: the disk image it creates blank when missing,
 * the control socket path it claims from a dead predecessor, and the UART link it swaps in place.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { failedPrecondition, invalidArgument } from '../../../protocol/src/errors.js';

/** Creates a sparse, all-zero disk image unless one exists already. */
export async function createBlankDisk(file: string, size: number): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw invalidArgument(`--disk: cannot create ${file}: ${(error as Error).message}`);
  }
  try {
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
}

/** Removes a stale socket file; one that still answers belongs to a live qemu-host. */
export async function claimSocketPath(socketPath: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw failedPrecondition(`--control: ${socketPath} is served by another process`);
  await unlink(socketPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** Points `link` at `target`, replacing what was there in one rename: readers never see no link. */
export async function linkAtomically(target: string, link: string): Promise<void> {
  const temporary = `${link}.${randomBytes(4).toString('hex')}.tmp`;
  await symlink(target, temporary);
  try {
    await rename(temporary, link);
  } catch (error) {
    // Best effort: the rename's error is the one that explains the failure.
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/** Removes `link` if it still points at `target` (a successor may have replaced it). */
export async function unlinkIfLinkTo(link: string, target: string): Promise<void> {
  // No link (or not a symlink) means there is nothing of ours to remove.
  const current = await readlink(link).catch(() => undefined);
  // Removed between the two calls: the goal is reached either way.
  if (current === target) await unlink(link).catch(() => undefined);
}
