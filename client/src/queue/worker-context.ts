/**
 * What every part of a queue worker's run shares: the store, the worker's and agent's names, its
 * timing and log, and the rules for writing to the queue and telling failures apart.
 */
import { JigletError } from '../../../protocol/src/errors.js';
import { isConnectionError } from './queue-db.js';
import type { AttemptEnd } from './queue-job.js';
import type { QueueStore } from './queue-store.js';

/** How a worker paces itself; every value is in milliseconds. */
export interface QueueWorkerTiming {
  /** How often a running job's heartbeat reaches the queue and its lease is renewed. */
  heartbeatMs: number;
  /** A job whose heartbeat is older than this is requeued (by any worker). */
  expiryMs: number;
  /** The TTL of the DUT leases the worker holds; shorter than expiryMs (see queue-worker.ts). */
  leaseTtlMs: number;
  /** How long an idle worker waits before it looks for work again, unless woken sooner. */
  idleMs: number;
}

/** The worker one attempt runs for. */
export interface WorkerContext {
  readonly store: QueueStore;
  /** This worker's name in the queue. */
  readonly name: string;
  /** How the agent is recorded in the queue (its address). */
  readonly agent: string;
  readonly timing: QueueWorkerTiming;
  /** Where the worker says what it did and what went wrong. */
  log(line: string): void;
}

/** How an attempt ended; `retry: false` keeps an infra-error from being retried (another attempt cannot help). */
export type Outcome = AttemptEnd & { retry?: boolean };

/**
 * Runs a queue write, retrying while the database cannot be reached: an outcome that is lost
 * would make the job run again. Gives up after the heartbeat expiry, when the queue has
 * requeued the job anyway.
 */
export async function retrying<T>(ctx: WorkerContext, write: () => Promise<T>): Promise<T> {
  const giveUpAt = Date.now() + ctx.timing.expiryMs;
  let pause = 100;
  for (;;) {
    try {
      return await write();
    } catch (err) {
      if (!isConnectionError(err) || Date.now() > giveUpAt) throw err;
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 2000);
    }
  }
}

/** True when the agent could not be reached or did not answer in time. */
export function isAgentUnavailable(err: unknown): boolean {
  if (!(err instanceof JigletError)) return false;
  return err.code === 'JIGLET_E_UNAVAILABLE' || err.code === 'JIGLET_E_DEADLINE_EXCEEDED';
}

/** The message of any thrown value. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
