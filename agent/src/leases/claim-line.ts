/**
 * The line of claims waiting for a DUT: served by priority, then first come first served. A claim
 * by labels waits for any of several DUTs at once and is granted whichever frees first.
 */
import type { Lease } from './lease-state.js';

/** A claim that waits its turn. */
export interface Waiter {
  /** Any of these will do (a claim by labels); the first to be free and claimable is granted. */
  duts: readonly string[];
  holder: string;
  ttlMs: number;
  priority: number;
  seq: number;
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

/** The waiting claims of every DUT, in one line. */
export class ClaimLine {
  readonly #waiters: Waiter[] = [];
  #seq = 0;

  /** The next arrival number: among equal priorities, lower is served first. */
  nextSeq(): number {
    return this.#seq++;
  }

  /** Puts a claim at the end of the line (its priority decides where it is served). */
  add(waiter: Waiter): void {
    this.#waiters.push(waiter);
  }

  /** Takes a waiter out of the line and clears its timer; false when it was not in it. */
  remove(waiter: Waiter): boolean {
    clearTimeout(waiter.timer);
    const index = this.#waiters.indexOf(waiter);
    if (index < 0) return false;
    this.#waiters.splice(index, 1);
    return true;
  }

  /** True when someone waits for `dut`. */
  waitsFor(dut: string): boolean {
    return this.#waiters.some((w) => w.duts.includes(dut));
  }

  /** The first in line for `dut`, if any. */
  firstFor(dut: string): Waiter | undefined {
    return this.ordered().find((w) => w.duts.includes(dut));
  }

  /** How many claims wait for `dut`, and where `holder`'s first one stands (1-based, 0 = none). */
  queue(dut: string, holder?: string): { waiting: number; position: number } {
    const waiting = this.ordered().filter((w) => w.duts.includes(dut));
    return {
      waiting: waiting.length,
      position: holder ? waiting.findIndex((w) => w.holder === holder) + 1 : 0,
    };
  }

  /** Empties the line, failing every waiting claim with `err`. */
  rejectAll(err: unknown): void {
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
  }

  /** The line in serving order. */
  ordered(): Waiter[] {
    return [...this.#waiters].sort((a, b) => b.priority - a.priority || a.seq - b.seq);
  }
}
