/**
 * Small JSON files in the state directory, replaced atomically and durably: write a temporary
 * file, fsync it, rename it over the old one, fsync the directory. A crash or a power cut leaves
 * either the old file or the new one, never a half-written or empty one (a rename that is not
 * preceded by an fsync can reach the disk before the data does: ext4 without auto_da_alloc, XFS,
 * btrfs), and the rename itself is on disk once this returns.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Writes `value` as JSON to `path` atomically and, unless `durable` is false, durably (two
 * fsyncs, which block the event loop: ~0.7 ms on an idle SSD, 10+ ms on a busy disk). Synchronous,
 * so saves of one file never reorder. Not durable still leaves the old or the new file after a
 * crash of the agent; after a power cut it may leave an empty or missing one, which the loader
 * moves aside (damaged-file.ts).
 */
export function writeJsonAtomic(path: string, value: unknown, opts: { durable?: boolean } = {}): void {
  const durable = opts.durable ?? true;
  const tmp = `${path}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeAll(fd, Buffer.from(JSON.stringify(value)));
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    // A full disk must not leave a stray temporary behind for every failed save.
    rmSync(tmp, { force: true });
    throw err;
  }
  if (durable) fsyncDir(dirname(path));
}

/**
 * writeJsonAtomic's durable write off the event loop: the same steps and the same guarantee, for
 * files whose save must not stall everything else while the disk is busy (a job's final record:
 * an fsync there took 150–300 ms under load). `text` is the JSON, taken when the save was asked
 * for. The caller keeps saves of one file in order (one at a time).
 */
export async function writeJsonAtomicDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  try {
    const file = await open(tmp, 'w');
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Makes the entries of `dir` (files created, renamed or removed in it) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes all of `data` at the file's current position. */
export function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written, data.length - written);
}

/** Reads a JSON file written by writeJsonAtomic; undefined if it does not exist. */
export function readJsonIfPresent<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
