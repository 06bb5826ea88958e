/** The bounds a lease claim must keep: its TTL and how long it may wait for a DUT. */
import { durationText } from '../../../protocol/src/duration-text.js';
import { invalidArgument } from '../../../protocol/src/errors.js';

/** Shortest TTL a claim may ask for. */
export const MIN_TTL_MS = 1000;
/** Longest TTL a claim may ask for (a lease's lifetime may be shorter still). */
export const MAX_TTL_MS = 24 * 3600 * 1000;
/** Longest a claim may wait: a week, well inside Node's timer limit (2^31 ms; longer fires at once). */
export const MAX_WAIT_MS = 7 * 24 * 3600 * 1000;

/** Throws INVALID_ARGUMENT unless the wait is a whole number of ms within MAX_WAIT_MS (or absent). */
export function checkWait(waitMs: number | undefined): void {
  if (waitMs === undefined) return;
  if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) {
    throw invalidArgument(
      `the claim wait must be between 0s and ${durationText(MAX_WAIT_MS)}; got ${durationText(waitMs)}`,
    );
  }
}

/** Throws INVALID_ARGUMENT unless the TTL lies between MIN_TTL_MS and the smaller of MAX_TTL_MS and a lease's lifetime. */
export function checkTtl(ttlMs: number, maxLifetimeMs: number): void {
  const most = Math.min(MAX_TTL_MS, maxLifetimeMs);
  if (!Number.isInteger(ttlMs) || ttlMs < MIN_TTL_MS || ttlMs > most) {
    throw invalidArgument(
      `the lease TTL must be between ${durationText(MIN_TTL_MS)} and ${durationText(most)}; got ${durationText(ttlMs)}`,
    );
  }
}
