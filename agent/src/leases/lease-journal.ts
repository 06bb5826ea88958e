/**
 * Where leases persist: a snapshot (`leases.json`, replaced atomically) plus an append-only
 * journal (`leases.jsonl`) of grants, renewals and ends since it. Claiming and releasing are the
 * hot path of a busy lab, and appending a line costs a fraction of writing and renaming a file;
 * the journal is folded into a new snapshot every JOURNAL_FOLD entries.
 *
 * Durability, without an fsync on the claim path (an fsync blocks the event loop: ~0.2 ms on an
 * idle disk here, 5–25 ms on a busy one):
 * - Tokens are reserved ahead, as database sequences are: before a DUT's token passes its
 *   reservation, a `reserve` entry for the next TOKEN_RESERVE tokens is written and fsynced. A
 *   restart after a crash or a power cut goes on above the reservation, so no token is ever
 *   handed out twice; a clean stop gives back what it did not use, so tokens stay dense.
 * - Grants and ends are fsynced in the background right after they are written (one fsync at a
 *   time, requests meanwhile merged into the next), so they reach the disk within milliseconds
 *   without the claim waiting. A power cut in that window loses a grant (the lease ended with
 *   the agent, like its jobs) or an end (the lease is held again until it expires).
 * - A renewal only goes to the page cache: losing one at worst ends its lease at the previous
 *   expiry.
 *
 * Damage: a snapshot or a journal line (other than a torn last one, which a crash mid-append
 * leaves) that cannot be read is moved aside and the leases start over: none held, and every
 * DUT's next token above the wall clock in milliseconds, a floor no DUT's count of grants can
 * have reached, so even the tokens that were lost are never handed out again.
 */
import { closeSync, fdatasync, fdatasyncSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { JigletError } from '../../../protocol/src/errors.js';
import { fsyncDir, writeAll, writeJsonAtomic } from '../state/atomic-json.js';
import { loadJsonState, moveAside, reportDamaged, shapeProblem } from '../state/damaged-file.js';
import type { Lease } from './lease-state.js';

/** Journal entries before they are folded into the snapshot. */
const JOURNAL_FOLD = 1000;

/** Tokens reserved at a time per DUT: one fsync per this many grants of a DUT. */
const TOKEN_RESERVE = 1000;

/** What the log says starts over when a lease file is damaged. */
const RESET = 'no lease is held any more, and fencing tokens continue above any handed out before';

/** What replay and expiry rely on; fields a newer Lease has pass through as they are. */
type LeaseCore = Pick<
  Lease,
  'id' | 'dut' | 'holder' | 'token' | 'ttlMs' | 'acquiredAt' | 'expiresAt' | 'maxExpiresAt'
>;

const LeaseSchema: z.ZodType<LeaseCore> = z.looseObject({
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
  /** Per DUT, the highest token that may have been handed out (see TOKEN_RESERVE). */
  reserved: z.record(z.string(), z.number()).optional(),
});

type Snapshot = z.infer<typeof SnapshotSchema>;

const EntrySchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('grant'), lease: LeaseSchema }),
  z.object({ op: z.literal('renew'), id: z.string(), expiresAt: z.number() }),
  z.object({ op: z.literal('end'), id: z.string() }),
  z.object({ op: z.literal('reserve'), dut: z.string(), upTo: z.number() }),
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
  /** Per DUT: the highest token that may have been handed out, and the highest that was. */
  readonly #reserved = new Map<string, number>();
  readonly #granted = new Map<string, number>();
  #syncing = false;
  #syncAgain = false;
  #closed = false;

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
    const leases = new Map((saved?.leases ?? []).map((l) => [l.dut, l as Lease]));
    const reserved = new Map(Object.entries(saved?.reserved ?? {}));
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
      apply(read.value, tokens, leases, reserved);
    }
    if (snap.state === 'damaged' || journalDamaged) {
      // Start over, above every token this file or the clock knows of.
      this.#tokenFloor = Math.max(Date.now(), this.#tokenFloor, ...tokens.values(), ...reserved.values());
      const reset: SavedLeases = { tokens: new Map(), leases: new Map(), tokenFloor: this.#tokenFloor };
      this.#fold(reset);
      return reset;
    }
    // Whatever may have been handed out counts as handed out: the next token is above it.
    for (const [dut, upTo] of reserved) tokens.set(dut, Math.max(tokens.get(dut) ?? 0, upTo));
    for (const [dut, token] of tokens) {
      this.#reserved.set(dut, token);
      this.#granted.set(dut, token);
    }
    return { tokens, leases, tokenFloor: this.#tokenFloor };
  }

  /** Records a grant; its token is on disk (reserved) before this returns, the grant soon after. */
  granted(lease: Lease, now: SavedLeases): void {
    if (this.#refused('grant', lease)) return;
    const { dut, token } = lease;
    this.#granted.set(dut, token);
    if (token <= (this.#reserved.get(dut) ?? 0)) {
      this.#append({ op: 'grant', lease }, now, 'soon');
      return;
    }
    const upTo = token + TOKEN_RESERVE - 1;
    this.#reserved.set(dut, upTo);
    this.#write({ op: 'reserve', dut, upTo });
    this.#append({ op: 'grant', lease }, now, 'now');
  }

  /** Records a renewal (page cache only, see above). */
  renewed(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'renew', id: lease.id, expiresAt: lease.expiresAt }, now, 'never');
  }

  /** Records an end, on disk soon after this returns. */
  ended(lease: Lease, now: SavedLeases): void {
    this.#append({ op: 'end', id: lease.id }, now, 'soon');
  }

  /** Gives back the tokens reserved but not used, makes everything durable and closes. Idempotent. */
  close(): void {
    if (this.#closed) return;
    const fd = this.#fd;
    try {
      for (const [dut, upTo] of this.#reserved) {
        const granted = this.#granted.get(dut) ?? 0;
        if (upTo > granted) this.#write({ op: 'reserve', dut, upTo: granted });
      }
      fdatasyncSync(fd);
    } catch (err) {
      // The reservations stay as they were: the next start merely skips the unused tokens.
      this.#log.error({ err, file: this.#journal }, 'could not flush the lease journal on close');
    }
    this.#closed = true;
    // A background fsync still running owns the descriptor; it closes it when done.
    if (!this.#syncing) closeSync(fd);
  }

  #append(entry: Entry, now: SavedLeases, sync: 'now' | 'soon' | 'never'): void {
    if (this.#refused(entry.op, entry)) return;
    this.#write(entry);
    // fdatasync: the size and the data, not the file's times, which nothing here reads.
    if (sync === 'now') fdatasyncSync(this.#fd);
    else if (sync === 'soon') this.#syncSoon();
    if (this.#entries < JOURNAL_FOLD) return;
    try {
      this.#fold(now);
    } catch (err) {
      // The entry is in the journal already, so it stands; the fold is tried again next time.
      // Failing here would make the caller undo what a restart will replay.
      this.#log.error({ err, file: this.#snapshot }, 'could not fold the lease journal; will try again');
    }
  }

  #write(entry: Entry): void {
    writeAll(this.#fd, Buffer.from(`${JSON.stringify(entry)}\n`));
    this.#entries++;
  }

  /** True (and logged) for a change after close: the descriptor may be another file's by then. */
  #refused(what: string, detail: unknown): boolean {
    if (!this.#closed) return false;
    this.#log.warn({ what, detail }, 'lease change after the lease journal was closed; not recorded');
    return true;
  }

  /** An fdatasync in the background: one at a time, the requests made meanwhile share the next. */
  #syncSoon(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = true;
    const fd = this.#fd;
    fdatasync(fd, (err) => {
      this.#syncing = false;
      if (err) this.#log.error({ err, file: this.#journal }, 'could not fsync the lease journal');
      if (this.#closed) {
        closeSync(fd);
        return;
      }
      if (this.#syncAgain) {
        this.#syncAgain = false;
        this.#syncSoon();
      }
    });
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
      reserved: Object.fromEntries(this.#reserved),
    } satisfies Snapshot);
    ftruncateSync(this.#fd, 0);
    // Rare (every JOURNAL_FOLD entries), and after a reset it keeps the old entries from coming back.
    fdatasyncSync(this.#fd);
    this.#entries = 0;
  }
}

/**
 * Replays one journal entry: tokens take the max, grants and ends land where they were, and a
 * DUT's last reservation holds (a clean stop shrinks it to what was used).
 */
function apply(
  entry: Entry,
  tokens: Map<string, number>,
  leases: Map<string, Lease>,
  reserved: Map<string, number>,
): void {
  if (entry.op === 'reserve') {
    reserved.set(entry.dut, entry.upTo);
    return;
  }
  if (entry.op === 'grant') {
    tokens.set(entry.lease.dut, Math.max(tokens.get(entry.lease.dut) ?? 0, entry.lease.token));
    leases.set(entry.lease.dut, entry.lease as Lease);
    return;
  }
  const lease = [...leases.values()].find((l) => l.id === entry.id);
  if (!lease) return;
  if (entry.op === 'renew') lease.expiresAt = entry.expiresAt;
  else leases.delete(lease.dut);
}

/** A journal write that failed: a full disk is RESOURCE_EXHAUSTED, anything else INTERNAL. */
export function journalError(err: unknown, what: string, verb: string): JigletError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new JigletError(
      'JIGLET_E_RESOURCE_EXHAUSTED',
      `no space left on the jig host to record ${what}, so it was not ${verb}; free space in the agent's state directory`,
    );
  }
  return new JigletError(
    'JIGLET_E_INTERNAL',
    `could not record ${what} (${code ?? String(err)}); it was not ${verb}`,
    {
      cause: err,
    },
  );
}
