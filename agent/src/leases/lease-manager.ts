/**
 * Exclusive DUT leases with fencing (issue 5; bound to their holder, issue 11). A lease has an
 * id, a fencing token that only ever increases per DUT — persisted before it is handed out, so an
 * agent restart never reuses one — and an expiry renewed by heartbeat up to a hard maximum.
 * Claims that wait are served by priority, then first come first served. Leases persist in the
 * state directory and survive a restart with their expiry. The lifecycle (held → released,
 * expired or revoked) is the state machine of lease-state.ts; the waiting line is claim-line.ts;
 * the check of a mutating call is lease-fence.ts, wired to every RPC that acts on a DUT. The jobs
 * started under a lease are bound to it here (in memory: a restart marks every job lost anyway)
 * and handed to whoever acts on its end.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type Logger, pino } from 'pino';
import { failedPrecondition, JigletError, notFound } from '../../../protocol/src/errors.js';
import { ClaimLine, type Waiter } from './claim-line.js';
import { checkFence } from './lease-fence.js';
import { journalError, LeaseJournal, type SavedLeases } from './lease-journal.js';
import { checkTtl, checkWait } from './lease-limits.js';
import {
  type HeldLeases,
  type Lease,
  type LeaseCaller,
  type LeaseChange,
  type LeaseEnd,
  LeaseStates,
} from './lease-state.js';

export { MAX_TTL_MS, MAX_WAIT_MS, MIN_TTL_MS } from './lease-limits.js';
export type { Lease, LeaseCaller, LeaseChange, LeaseEnd, LeaseStateName } from './lease-state.js';

/** Says why a DUT may not be leased now (e.g. it is quarantined), or undefined when it may. */
export type ClaimGate = (dut: string) => string | undefined;

/**
 * Emits 'ended' (lease, reason, ids of the jobs bound to it) when a lease ends, so its jobs can be
 * stopped and the DUT made safe, and 'change' (LeaseChange) for every grant, renewal, end and change in a waiting line.
 */
export class LeaseManager extends EventEmitter implements HeldLeases {
  readonly #journal: LeaseJournal;
  readonly #maxLifetimeMs: number;
  readonly #now: () => number;
  readonly #tokens = new Map<string, number>();
  /** The last token of a DUT not in #tokens (above 0 once damaged lease state was reset). */
  readonly #tokenFloor: number;
  readonly #leases = new Map<string, Lease>(); // by DUT
  readonly #timers = new Map<string, NodeJS.Timeout>(); // by lease id
  readonly #line = new ClaimLine();
  /** The lifecycle of every held and recently ended lease. */
  readonly #states = new LeaseStates();
  /** Jobs started under each held lease and still running (see `bind`), by lease id. */
  readonly #jobs = new Map<string, Set<string>>();
  #closed = false;
  #gate: ClaimGate = () => undefined;
  readonly #log: Logger;

  constructor(opts: { stateDir: string; maxLifetimeMs?: number; now?: () => number; log?: Logger }) {
    super();
    this.#maxLifetimeMs = opts.maxLifetimeMs ?? 7 * 24 * 3600 * 1000;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? pino({ enabled: false });
    this.#journal = new LeaseJournal(opts.stateDir, this.#log);
    const saved = this.#journal.load();
    this.#tokenFloor = saved.tokenFloor ?? 0;
    for (const [dut, token] of saved.tokens) this.#tokens.set(dut, token);
    for (const [dut, lease] of saved.leases) {
      this.#leases.set(dut, lease);
      this.#states.held(lease.id);
    }
  }

  /**
   * Arms the expiry of the leases loaded from disk. Separate from the constructor so whoever
   * acts on 'ended' (stopping jobs, the safe state) listens first: a lease that expired while the
   * agent was down ends right here, and that must not go unheard.
   */
  start(): void {
    for (const lease of this.#leases.values()) this.#arm(lease);
  }

  /**
   * Who decides whether a DUT may be leased at all (its health). Set once by the jig runtime;
   * call `retry` when the answer changes so waiting claims are served.
   */
  setGate(gate: ClaimGate): void {
    this.#gate = gate;
  }

  /** Serves waiting claims for `dut` again, e.g. after it came back from quarantine. */
  retry(dut: string): void {
    this.#serve(dut);
  }

  /** Leases held now. */
  list(): Lease[] {
    return [...this.#leases.values()].sort((a, b) => a.dut.localeCompare(b.dut));
  }

  /** How many claims wait for `dut`, and where `holder`'s first one stands (1-based, 0 = none). */
  queue(dut: string, holder?: string): { waiting: number; position: number } {
    return this.#line.queue(dut, holder);
  }

  /**
   * Claims one of `duts` (one name, or every DUT matching a label selector): the first that is
   * free, claimable and has nobody waiting for it. Without `waitMs` a DUT that cannot be had is
   * FAILED_PRECONDITION saying why; with it the claim waits its turn (priority, then arrival) for
   * whichever of them frees first, and fails with DEADLINE_EXCEEDED.
   */
  claim(opts: {
    duts: readonly string[];
    holder: string;
    ttlMs: number;
    waitMs?: number;
    priority?: number;
  }): Promise<Lease> {
    if (this.#closed)
      return Promise.reject(new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down'));
    const free = opts.duts.find((dut) => this.#freeFor(dut));
    try {
      checkTtl(opts.ttlMs, this.#maxLifetimeMs);
      checkWait(opts.waitMs);
      if (free !== undefined) return Promise.resolve(this.#grant(free, opts.holder, opts.ttlMs));
    } catch (err) {
      return Promise.reject(err);
    }
    if (!opts.waitMs) return Promise.reject(failedPrecondition(this.#whyNot(opts.duts)));
    const waitMs = opts.waitMs;
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        duts: [...opts.duts],
        holder: opts.holder,
        ttlMs: opts.ttlMs,
        priority: opts.priority ?? 0,
        seq: this.#line.nextSeq(),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#drop(waiter);
          reject(
            new JigletError(
              'JIGLET_E_DEADLINE_EXCEEDED',
              `${opts.duts.join(' or ')} ${opts.duts.length > 1 ? 'were' : 'was'} not free within ${waitMs} ms`,
            ),
          );
        }, waitMs),
      };
      this.#line.add(waiter);
      this.#announceWaiting(waiter.duts);
    });
  }

  /**
   * The agent's own claim (a health check): granted at once ahead of waiting claims and past the
   * gate, since the gate is what keeps clients off while the agent works; refused when held.
   */
  seize(dut: string, holder: string, ttlMs: number): Lease {
    this.#refuseWhenClosed();
    checkTtl(ttlMs, this.#maxLifetimeMs);
    const held = this.#leases.get(dut);
    if (held) throw failedPrecondition(`${dut} is leased by ${held.holder}`);
    return this.#grant(dut, holder, ttlMs);
  }

  /** Extends a lease by its TTL (never past its maximum); a stale lease is refused, saying why. */
  renew(leaseId: string, holder: string): Lease {
    this.#refuseWhenClosed();
    const lease = this.#current(leaseId);
    if (lease.holder !== holder)
      throw failedPrecondition(`lease ${leaseId} belongs to ${lease.holder}, not ${holder}`);
    const before = lease.expiresAt;
    lease.expiresAt = Math.min(this.#now() + lease.ttlMs, lease.maxExpiresAt);
    try {
      this.#journal.renewed(lease, this.#saved());
    } catch (err) {
      // Unrenewed, as on disk: the timer and the expiry a restart would read stay in agreement.
      lease.expiresAt = before;
      throw journalError(err, `the renewal of lease ${leaseId}`, 'renewed');
    }
    this.#arm(lease);
    this.#tell('change', { kind: 'renewed', lease } satisfies LeaseChange);
    return lease;
  }

  /** Ends a lease: its holder may, and so may an admin (`revoke`). */
  release(leaseId: string, holder: string, opts: { revoke?: boolean } = {}): Lease {
    this.#refuseWhenClosed();
    const lease = this.#current(leaseId);
    if (lease.holder !== holder && !opts.revoke) {
      throw failedPrecondition(
        `lease ${leaseId} belongs to ${lease.holder}; only its holder or an admin may end it`,
      );
    }
    this.#end(lease, opts.revoke && lease.holder !== holder ? 'revoked' : 'released');
    return lease;
  }

  /**
   * The fencing check of a mutating call on `dut` by `caller` (see lease-fence.ts): returns the
   * DUT's lease when the caller holds it and sent it, undefined when the DUT is not leased.
   */
  check(dut: string, leaseId: string | undefined, caller: LeaseCaller): Lease | undefined {
    return checkFence(this, dut, leaseId, caller);
  }

  /** The lease held on `dut` now, if any. */
  leaseOn(dut: string): Lease | undefined {
    return this.#leases.get(dut);
  }

  /** The held lease with this id, if any. */
  byId(leaseId: string): Lease | undefined {
    return [...this.#leases.values()].find((l) => l.id === leaseId);
  }

  /** Why a recently ended lease ended (bounded memory: undefined for old or unknown ids). */
  endOf(leaseId: string): LeaseEnd | undefined {
    return this.#states.endOf(leaseId);
  }

  /**
   * Records that job `jobId` was started under `leaseId`, so that the lease's end stops it
   * (whoever started it). False when the lease is no longer held: the caller stops the job.
   */
  bind(leaseId: string, jobId: string): boolean {
    if (!this.byId(leaseId)) return false;
    const jobs = this.#jobs.get(leaseId) ?? new Set<string>();
    this.#jobs.set(leaseId, jobs.add(jobId));
    return true;
  }

  /** Forgets a bound job that has ended, so a week-long lease does not collect every job id. */
  unbind(leaseId: string, jobId: string): void {
    this.#jobs.get(leaseId)?.delete(jobId);
  }

  /** Stops timers and refuses new claims and changes; leases stay saved with their expiry. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#journal.close();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#line.rejectAll(new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down'));
  }

  /** Free, claimable, and nobody queued ahead. */
  #freeFor(dut: string): boolean {
    return !this.#leases.has(dut) && this.#gate(dut) === undefined && !this.#line.waitsFor(dut);
  }

  /** Why none of `duts` can be had right now, for a claim that will not wait. */
  #whyNot(duts: readonly string[]): string {
    const reasons = duts.map((dut) => {
      const held = this.#leases.get(dut);
      if (held) return `${dut} is leased by ${held.holder} until ${new Date(held.expiresAt).toISOString()}`;
      return this.#gate(dut) ?? `${dut} has claims waiting for it`;
    });
    return `${reasons.join('; ')}; claim with a wait to queue for ${duts.length > 1 ? 'one' : 'it'}`;
  }

  #announceWaiting(duts: readonly string[]): void {
    for (const dut of duts) {
      this.#tell('change', { kind: 'waiting', dut, waiting: this.queue(dut).waiting } satisfies LeaseChange);
    }
  }

  /**
   * Emits to listeners (watch streams, the run record, the jig). Lease changes happen inside
   * timers and other callers' requests: a listener that throws is logged, and the lease manager
   * carries on with the next listener and its own bookkeeping.
   */
  #tell(event: 'change', change: LeaseChange): void;
  #tell(event: 'ended', lease: Lease, reason: LeaseEnd, jobs: string[]): void;
  #tell(event: string, ...args: unknown[]): void {
    for (const listener of this.listeners(event)) {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (err) {
        this.#log.error({ err, event }, 'a lease listener failed');
      }
    }
  }

  #current(leaseId: string): Lease {
    const lease = this.byId(leaseId);
    if (!lease) throw notFound(`no lease ${leaseId.slice(0, 64)} (expired, released, or never granted)`);
    return lease;
  }

  #grant(dut: string, holder: string, ttlMs: number): Lease {
    const now = this.#now();
    const previousToken = this.#tokens.get(dut);
    const token = (previousToken ?? this.#tokenFloor) + 1;
    this.#tokens.set(dut, token);
    const lease: Lease = {
      id: randomUUID(),
      dut,
      holder,
      token,
      ttlMs,
      acquiredAt: now,
      expiresAt: now + ttlMs,
      maxExpiresAt: now + this.#maxLifetimeMs,
    };
    this.#leases.set(dut, lease);
    try {
      // Saved before anyone sees the token: a restart must never hand it out again.
      this.#journal.granted(lease, this.#saved());
    } catch (err) {
      // Not on disk, so not granted: a lease held in memory only would have no expiry after a
      // restart, and its token could be handed out twice. The DUT stays free.
      this.#leases.delete(dut);
      if (previousToken === undefined) this.#tokens.delete(dut);
      else this.#tokens.set(dut, previousToken);
      this.#log.error({ err, dut, holder }, 'could not record a lease grant; not granted');
      throw journalError(err, `the lease of ${dut} for ${holder}`, 'granted');
    }
    this.#states.held(lease.id);
    this.#arm(lease);
    this.#tell('change', { kind: 'granted', lease } satisfies LeaseChange);
    return lease;
  }

  #arm(lease: Lease): void {
    clearTimeout(this.#timers.get(lease.id));
    if (this.#closed) return;
    const timer = setTimeout(
      () => {
        // A timer callback has no caller to hand an error to; #end contains its own failures,
        // this is the last line before an exception would reach the process.
        try {
          this.#end(lease, 'expired');
        } catch (err) {
          this.#log.error({ err, lease: lease.id, dut: lease.dut }, 'ending an expired lease failed');
        }
      },
      Math.max(0, lease.expiresAt - this.#now()),
    );
    this.#timers.set(lease.id, timer);
  }

  #end(lease: Lease, reason: LeaseEnd): void {
    clearTimeout(this.#timers.get(lease.id));
    this.#timers.delete(lease.id);
    // Compare-and-set: an end that lost the race (a timer after a release) changes nothing.
    if (!this.#states.compareAndSet(lease.id, 'held', reason)) return;
    this.#leases.delete(lease.dut);
    const jobs = [...(this.#jobs.get(lease.id) ?? [])];
    this.#jobs.delete(lease.id);
    try {
      this.#journal.ended(lease, this.#saved());
    } catch (err) {
      // The lease ends anyway: its jobs must stop and the DUT go safe now. Only a restart before
      // the next successful write would bring it back, until its own expiry.
      this.#log.error(
        { err, lease: lease.id, dut: lease.dut, reason },
        'could not record the end of a lease; ended it all the same',
      );
    }
    this.#tell('ended', lease, reason, jobs);
    this.#tell('change', { kind: 'ended', lease, reason } satisfies LeaseChange);
    this.#serve(lease.dut);
  }

  /** Hands a freed DUT to the first waiter in line for it; a grant that fails fails that claim. */
  #serve(dut: string): void {
    for (;;) {
      if (this.#closed || this.#leases.has(dut) || this.#gate(dut) !== undefined) return;
      const next = this.#line.firstFor(dut);
      if (!next) return;
      this.#drop(next);
      try {
        next.resolve(this.#grant(dut, next.holder, next.ttlMs));
        return;
      } catch (err) {
        // The next in line is tried: leaving them queued behind nothing would strand them.
        next.reject(err);
      }
    }
  }

  #drop(waiter: Waiter): void {
    if (this.#line.remove(waiter)) this.#announceWaiting(waiter.duts);
  }

  #refuseWhenClosed(): void {
    if (this.#closed) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down');
  }

  #saved(): SavedLeases {
    return { tokens: this.#tokens, leases: this.#leases };
  }
}
