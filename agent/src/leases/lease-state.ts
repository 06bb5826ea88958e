/**
 * What a lease is, and its lifecycle as an explicit state machine like job-state.ts: a lease is
 * `held` from its grant until it is `released`, `expired` or `revoked`, and those three are final.
 * Ending is a compare-and-set, so an expiry timer that fires while the holder releases (or after
 * a new lease took the DUT) cannot end a lease twice or end the wrong one.
 */
import { JigletError } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';

/** A held lease. */
export interface Lease {
  id: string;
  dut: string;
  holder: string;
  token: number;
  ttlMs: number;
  acquiredAt: number;
  expiresAt: number;
  /** Renewals never push the expiry past this. */
  maxExpiresAt: number;
}

/** Who makes a mutating call on a DUT: the fencing check compares the name with the holder. */
export type LeaseCaller = Pick<Identity, 'name' | 'role'>;

/** Why a lease ended. */
export type LeaseEnd = 'released' | 'expired' | 'revoked';

/** Lifecycle states; all but `held` are final. */
export type LeaseStateName = 'held' | LeaseEnd;

/** What `watch` followers hear (the 'change' event). */
export type LeaseChange =
  | { kind: 'granted' | 'renewed'; lease: Lease }
  | { kind: 'ended'; lease: Lease; reason: LeaseEnd }
  | { kind: 'waiting'; dut: string; waiting: number };

/** The lookups the fencing check needs (lease-fence.ts). */
export interface HeldLeases {
  /** The lease held on `dut` now, if any. */
  leaseOn(dut: string): Lease | undefined;
  /** The held lease with this id, if any. */
  byId(leaseId: string): Lease | undefined;
  /** How a recently ended lease ended. */
  endOf(leaseId: string): LeaseEnd | undefined;
}

const TRANSITIONS: Readonly<Record<LeaseStateName, readonly LeaseStateName[]>> = {
  held: ['released', 'expired', 'revoked'],
  released: [],
  expired: [],
  revoked: [],
};

/** Ended leases remembered for their reason, so a stale holder is told which it is. */
const ENDED_KEPT = 1000;

/** Throws JIGLET_E_ILLEGAL_TRANSITION unless `from → to` is allowed. */
export function assertLeaseTransition(leaseId: string, from: LeaseStateName, to: LeaseStateName): void {
  if (!TRANSITIONS[from].includes(to)) {
    throw new JigletError(
      'JIGLET_E_ILLEGAL_TRANSITION',
      `lease ${leaseId} is ${from}; it cannot become ${to}`,
    );
  }
}

/**
 * The state of every held lease and of the last ENDED_KEPT ended ones (older ones are forgotten:
 * memory stays bounded however many leases a long-lived agent grants).
 */
export class LeaseStates {
  readonly #held = new Set<string>();
  readonly #ended = new Map<string, LeaseEnd>();

  /** A lease was granted (or loaded from disk): it is held. */
  held(leaseId: string): void {
    this.#held.add(leaseId);
  }

  /** The state of a lease; undefined for an unknown one or one ended long ago. */
  stateOf(leaseId: string): LeaseStateName | undefined {
    return this.#held.has(leaseId) ? 'held' : this.#ended.get(leaseId);
  }

  /** How a recently ended lease ended. */
  endOf(leaseId: string): LeaseEnd | undefined {
    return this.#ended.get(leaseId);
  }

  /**
   * Compare-and-set: the lease ends as `to` if it is `from` now, and true says it did; false when
   * another end came first. An end that is not a transition of the lifecycle throws.
   */
  compareAndSet(leaseId: string, from: LeaseStateName, to: LeaseEnd): boolean {
    assertLeaseTransition(leaseId, from, to);
    if (this.stateOf(leaseId) !== from) return false;
    this.#held.delete(leaseId);
    this.#ended.set(leaseId, to);
    if (this.#ended.size > ENDED_KEPT) this.#ended.delete(this.#ended.keys().next().value!);
    return true;
  }
}
