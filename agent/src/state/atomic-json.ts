/**
 * Small JSON files in the state directory, replaced atomically (write a temporary file, then
 * rename) so a crash never leaves a half-written one.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** Writes `value` as JSON to `path` atomically. Synchronous, so saves of one file never reorder. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, path);
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
