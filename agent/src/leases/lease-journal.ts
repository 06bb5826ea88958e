/**
 * Where leases persist: a snapshot (`leases.json`, replaced atomically) plus an append-only
 * journal (`leases.jsonl`) of grants, renewals and ends since it. Claiming and releasing are the
 * hot path of a busy lab, and appending a line costs a fraction of writing and renaming a file;
 * the journal is folded into a new snapshot every JOURNAL_FOLD entries.
 *
 * Durability: a grant is fsynced before its token is handed out, so not even a power cut makes a
 * restarted agent reuse a token, and an end is fsynced so a released DUT does not come back
 * leased. A renewal only goes to the page cache: losing one to a power cut at worst ends the
 * lease at its previous expiry (and the next grant's fsync carries it to disk anyway).
 *
 * Damage: a snapshot or a journal line (other than a torn last one, which a crash mid-append
 * leaves) that cannot be read is moved aside and the leases start over: none held, and every
 * DUT's next token above the wall clock in milliseconds, a floor no DUT's count of grants can
 * have reached, so even the tokens that were lost are never handed out again.
 */
import { closeSync, fdatasyncSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { fsyncDir, writeAll, writeJsonAtomic } from '../state/atomic-json.js';
import { loadJsonState, moveAside, reportDamaged, shapeProblem } from '../state/damaged-file.js';
import type { Lease } from './lease-manager.js';

/** Journal entries before they are folded into the snapshot. */
const JOURNAL_FOLD = 1000;

/** What the log says starts over when a lease file is damaged. */
const RESET = 'no lease is held any more, and fencing tokens continue above any handed out before';

const LeaseSchema: z.ZodType<Lease> = z.looseObject({
  id: z.string(),
  dut: z.string(),
  holder: z.string(),
  token: z.number(),
  ttlMs: z.number(),
  acquiredAt: z.number(),
  expiresAt: z.number(),
  maxExpiresAt: z.number(),
});

const SnapshotSchema = z.object({
  tokens: z.record(z.string(), z.number()),
  leases: z.array(LeaseSchema),
  /** Tokens of DUTs not in `tokens` start above this (set when damaged state was reset). */
  tokenFloor: z.number().optional(),
});

type Snapshot = z.infer<typeof SnapshotSchema>;

const EntrySchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('grant'), lease: LeaseSchema }),
  z.object({ op: z.literal('renew'), id: z.string(), expiresAt: z.number() }),
  z.object({ op: z.literal('end'), id: z.string() }),
]);

type Entry = z.infer<typeof EntrySchema>;

/** What was saved: the highest token per DUT and the leases held, by DUT. */
export interface SavedLeases {
  tokens: Map<string, number>;
  leases: Map<string, Lease>;
  /** The last token of a DUT not in `tokens` (0 unless damaged state was reset). */
  tokenFloor?: number;
}

export class LeaseJournal {
  readonly #snapshot: string;
  readonly #journal: string;
  readonly #log: Logger;
  #fd: number;
  #entries = 0;
  #tokenFloor = 0;

  constructor(stateDir: string, log: Logger) {
    this.#snapshot = join(stateDir, 'leases.json');
    this.#journal = join(stateDir, 'leases.jsonl');
    this.#log = log;
    this.#fd = this.#openJournal();
  }

  /**
   * Reads the snapshot, then replays the journal over it (a torn last line is cut off). A damaged
   * file is moved aside and the leases start over (see above), saved at once as a new snapshot.
   */
  load(): SavedLeases {
    const snap = loadJsonState(this.#snapshot, SnapshotSchema, { log: this.#log, reset: RESET });
    const saved = snap.state === 'ok' ? snap.value : undefined;
    const tokens = new Map(Object.entries(saved?.tokens ?? {}));
    const leases = new Map((saved?.leases ?? []).map((l) => [l.dut, l]));
    this.#tokenFloor = saved?.tokenFloor ?? 0;
    const text = readFileSync(this.#journal, 'utf8');
    // Cut a torn last line off, or the next entry would be glued to it and lost with it.
    const whole = text.lastIndexOf('\n') + 1;
    if (whole < text.length) {
      ftruncateSync(this.#fd, Buffer.byteLength(text.slice(0, whole)));
      this.#log.warn(
        { file: this.#journal },
        'cut a torn last line off the lease journal (the agent stopped mid-write)',
      );
    }
    let journalDamaged = false;
    for (const [i, line] of text.slice(0, whole).split('\n').entries()) {
      if (line.trim() === '') continue;
      const read = shapeProblem(line, EntrySchema);
      if (!read.ok) {
        this.#journalDamaged(`line ${i + 1}: ${read.problem}`);
        journalDamaged = true;
        break;
      }
      this.#entries++;
      apply(read.value, tokens, leases);
    }
    if (snap.state !== 'damaged' && !journalDamaged) return { tokens, leases, tokenFloor: this.#tokenFloor };
    // Start over, above every token this file or the clock knows of.
    this.#tokenFloor = Math.max(Date.now(), this.#tokenFloor, ...tokens.values());
    const reset: SavedLeases = { tokens: new Map(), leases: new Map(), tokenFloor: this.#tokenFloor };
    this.#fold(reset);
    return reset;
  }

  /** Records a grant, durably: returns once it is on disk. */
  granted(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'grant', lease }, now, true);
  }

  /** Records a renewal (page cache only, see above). */
  renewed(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'renew', id: lease.id, expiresAt: lease.expiresAt }, now, false);
  }

  /** Records an end, durably. */
  ended(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'end', id: lease.id }, now, true);
  }

  close(): void {
    closeSync(this.#fd);
  }

  #append(entry: Entry, now: SavedLeases, durable: boolean): void {
    writeAll(this.#fd, Buffer.from(`${JSON.stringify(entry)}\n`));
    // fdatasync: the size and the data, not the file's times, which nothing here reads.
    if (durable) fdatasyncSync(this.#fd);
    if (++this.#entries >= JOURNAL_FOLD) this.#fold(now);
  }

  /** Opens (creating) the journal for appending; a newly created one's name is made durable. */
  #openJournal(): number {
    const fd = openSync(this.#journal, 'a');
    fsyncDir(dirname(this.#journal));
    return fd;
  }

  /** Moves a damaged journal aside and starts an empty one. */
  #journalDamaged(problem: string): void {
    closeSync(this.#fd);
    const movedTo = moveAside(this.#journal);
    reportDamaged(this.#log, this.#journal, movedTo, problem, RESET);
    this.#fd = this.#openJournal();
    this.#entries = 0;
  }

  /**
   * A new snapshot, then an empty journal. A crash between the two replays entries the snapshot
   * already holds, which changes nothing: grants and ends land where they were, tokens take the max.
   */
  #fold(now: SavedLeases): void {
    writeJsonAtomic(this.#snapshot, {
      tokens: Object.fromEntries(now.tokens),
      leases: [...now.leases.values()],
      ...(this.#tokenFloor > 0 ? { tokenFloor: this.#tokenFloor } : {}),
    } satisfies Snapshot);
    ftruncateSync(this.#fd, 0);
    // Rare (every JOURNAL_FOLD entries), and after a reset it keeps the old entries from coming back.
    fdatasyncSync(this.#fd);
    this.#entries = 0;
  }
}

/** Replays one journal entry: tokens take the max, grants and ends land where they were. */
function apply(entry: Entry, tokens: Map<string, number>, leases: Map<string, Lease>): void {
  if (entry.op === 'grant') {
    tokens.set(entry.lease.dut, Math.max(tokens.get(entry.lease.dut) ?? 0, entry.lease.token));
    leases.set(entry.lease.dut, entry.lease);
    return;
  }
  const lease = [...leases.values()].find((l) => l.id === entry.id);
  if (!lease) return;
  if (entry.op === 'renew') lease.expiresAt = entry.expiresAt;
  else leases.delete(lease.dut);
}
