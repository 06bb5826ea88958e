/**
 * The SHA-256s of image files this user hashed before, so that flashing an unchanged file again
 * does not read it all again (0.45 s per GiB of `.gz` here; the agent's cache is keyed by it).
 * A file is known by its device, inode, size, and mtime and ctime in nanoseconds: any write moves
 * its ctime, which no tool can set back. A hash is remembered only when the file had not changed
 * for a while before it was hashed, so a file still being written is hashed again next time (as
 * git's index treats "racily clean" files). Kept in `$XDG_CACHE_HOME/jiglet/image-sha256.json`
 * (`~/.cache/…`), at most MAX_ENTRIES files; a cache that cannot be read or written is no cache.
 */
import { randomUUID } from 'node:crypto';
import {
  type BigIntStats,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Files remembered at most (the least recently used go first). */
const MAX_ENTRIES = 64;
/** A file changed less than this long before its hashing began is not remembered. */
const SETTLED_NS = 2_000_000_000n;

interface Entry {
  /** `dev:ino:size:mtimeNs:ctimeNs` of the file when it was hashed. */
  stamp: string;
  sha256: string;
  usedAt: number;
}

/** Where the cache lives for `env`. */
export function hashCachePath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'jiglet', 'image-sha256.json');
}

/** The file's SHA-256: remembered if it has not changed since, else `hash()`'s (then remembered). */
export async function cachedSha256(
  file: string,
  hash: () => Promise<string>,
  opts: { cachePath?: string; settledNs?: bigint } = {},
): Promise<string> {
  const cachePath = opts.cachePath ?? hashCachePath();
  const path = resolve(file);
  const before = statSync(path, { bigint: true });
  const stamp = stampOf(before);
  const entries = load(cachePath);
  const known = entries[path];
  // A cache file edited or damaged by hand must not hand the agent something that is not a hash.
  if (known?.stamp === stamp && typeof known.sha256 === 'string' && /^[0-9a-f]{64}$/.test(known.sha256)) {
    known.usedAt = Date.now();
    save(cachePath, entries);
    return known.sha256;
  }
  // Rounded up to the next millisecond: file times have nanoseconds, Date.now() only milliseconds,
  // and a file changed within the current millisecond must not look changed after the start.
  const startedNs = BigInt(Date.now() + 1) * 1_000_000n;
  const sha256 = await hash();
  const after = statSync(path, { bigint: true });
  const settled = startedNs - maxBig(after.mtimeNs, after.ctimeNs) >= (opts.settledNs ?? SETTLED_NS);
  if (stampOf(after) === stamp && settled) {
    entries[path] = { stamp, sha256, usedAt: Date.now() };
    save(cachePath, trim(entries));
  }
  return sha256;
}

function stampOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function load(cachePath: string): Record<string, Entry> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(cachePath, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, Entry>) : {};
  } catch {
    return {};
  }
}

/** Written whole under a temporary name and renamed: a reader sees the old cache or the new. */
function save(cachePath: string, entries: Record<string, Entry>): void {
  const temp = `${cachePath}.${randomUUID()}.tmp`;
  try {
    mkdirSync(dirname(cachePath), { recursive: true });
    writeFileSync(temp, JSON.stringify(entries));
    renameSync(temp, cachePath);
  } catch {
    // A read-only home or a full disk: the next flash hashes again, and no temporary is left
    // (where the folder itself could not be made, there is none to remove).
    try {
      rmSync(temp, { force: true });
    } catch {}
  }
}

function trim(entries: Record<string, Entry>): Record<string, Entry> {
  const kept = Object.entries(entries)
    .filter(([, e]) => typeof e?.stamp === 'string' && typeof e.sha256 === 'string')
    .sort(([, a], [, b]) => b.usedAt - a.usedAt)
    .slice(0, MAX_ENTRIES);
  return Object.fromEntries(kept);
}
