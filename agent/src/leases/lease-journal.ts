/**
 * Where leases persist: a snapshot (`leases.json`, replaced atomically) plus an append-only
 * journal (`leases.jsonl`) of grants, renewals and ends since it. Claiming and releasing are the
 * hot path of a busy lab, and appending a line costs a fraction of writing and renaming a file;
 * the journal is folded into a new snapshot every JOURNAL_FOLD entries. A grant is on disk before
 * its token is handed out, so a restarted agent never reuses a token. Like the job logs, lines
 * go to the page cache without fsync: they survive an agent crash, not a power cut.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';
import type { Lease } from './lease-manager.js';

/** Journal entries before they are folded into the snapshot. */
const JOURNAL_FOLD = 1000;

interface Snapshot {
  tokens: Record<string, number>;
  leases: Lease[];
}

type Entry =
  | { op: 'grant'; lease: Lease }
  | { op: 'renew'; id: string; expiresAt: number }
  | { op: 'end'; id: string };

/** What was saved: the highest token per DUT and the leases held, by DUT. */
export interface SavedLeases {
  tokens: Map<string, number>;
  leases: Map<string, Lease>;
}

export class LeaseJournal {
  readonly #snapshot: string;
  readonly #journal: string;
  #fd: number;
  #entries = 0;

  constructor(stateDir: string) {
    this.#snapshot = join(stateDir, 'leases.json');
    this.#journal = join(stateDir, 'leases.jsonl');
    this.#fd = openSync(this.#journal, 'a');
  }

  /** Reads the snapshot, then replays the journal over it (a torn last line is ignored). */
  load(): SavedLeases {
    const saved = readJsonIfPresent<Snapshot>(this.#snapshot);
    const tokens = new Map(Object.entries(saved?.tokens ?? {}));
    const leases = new Map((saved?.leases ?? []).map((l) => [l.dut, l]));
    const text = readFileSync(this.#journal, 'utf8');
    // Cut a torn last line off, or the next entry would be glued to it and lost with it.
    const whole = text.lastIndexOf('\n') + 1;
    if (whole < text.length) ftruncateSync(this.#fd, Buffer.byteLength(text.slice(0, whole)));
    for (const line of text.slice(0, whole).split('\n')) {
      const entry = parse(line);
      if (!entry) continue;
      this.#entries++;
      if (entry.op === 'grant') {
        tokens.set(entry.lease.dut, Math.max(tokens.get(entry.lease.dut) ?? 0, entry.lease.token));
        leases.set(entry.lease.dut, entry.lease);
        continue;
      }
      const lease = [...leases.values()].find((l) => l.id === entry.id);
      if (!lease) continue;
      if (entry.op === 'renew') lease.expiresAt = entry.expiresAt;
      else leases.delete(lease.dut);
    }
    return { tokens, leases };
  }

  granted(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'grant', lease }, now);
  }

  renewed(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'renew', id: lease.id, expiresAt: lease.expiresAt }, now);
  }

  ended(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'end', id: lease.id }, now);
  }

  close(): void {
    closeSync(this.#fd);
  }

  #append(entry: Entry, now: SavedLeases): void {
    const line = Buffer.from(`${JSON.stringify(entry)}\n`);
    let written = 0;
    while (written < line.length) written += writeSync(this.#fd, line, written, line.length - written);
    if (++this.#entries >= JOURNAL_FOLD) this.#fold(now);
  }

  /**
   * A new snapshot, then an empty journal. A crash between the two replays entries the snapshot
   * already holds, which changes nothing: grants and ends land where they were, tokens take the max.
   */
  #fold(now: SavedLeases): void {
    writeJsonAtomic(this.#snapshot, {
      tokens: Object.fromEntries(now.tokens),
      leases: [...now.leases.values()],
    } satisfies Snapshot);
    ftruncateSync(this.#fd, 0);
    this.#entries = 0;
  }
}

function parse(line: string): Entry | undefined {
  if (line.trim() === '') return undefined;
  try {
    return JSON.parse(line) as Entry;
  } catch {
    return undefined; // the torn last line of a crash
  }
}
