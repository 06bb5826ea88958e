/**
 * The heartbeat of a running attempt: every heartbeatMs it tells the queue the job is alive (and
 * hears of a cancel), and renews the DUT's lease. A queue that stays unreachable for most of the
 * expiry stops the job, since the queue will soon hand it to another worker.
 */
import type { JigletClient } from '../jiglet-client.js';
import type { Lease } from '../lease-client.js';
import type { QueueJob } from './queue-store.js';
import { isAgentUnavailable, messageOf, type Outcome, type WorkerContext } from './worker-context.js';

/** Starts the heartbeat; `stopWith` interrupts the attempt (requeue: hand it back to the queue). */
export function startHeartbeat(
  ctx: WorkerContext,
  job: QueueJob,
  lease: Lease,
  client: JigletClient,
  stopWith: (outcome: Outcome, requeue: boolean) => void,
): { stop: () => void } {
  const { heartbeatMs, expiryMs } = ctx.timing;
  let lastBeat = Date.now();
  let busy = false;
  const beat = async (): Promise<void> => {
    try {
      const answer = await ctx.store.heartbeat(job.id, job.attempts, ctx.name);
      lastBeat = Date.now();
      if (!answer.ours)
        stopWith(
          {
            verdict: 'infra-error',
            step: 'worker',
            reason: 'the queue gave this attempt to another worker',
            retry: false,
          },
          false,
        );
      else if (answer.cancelRequested)
        stopWith({ verdict: 'cancelled', reason: 'cancelled on request' }, false);
    } catch (err) {
      if (Date.now() - lastBeat > expiryMs - 2 * heartbeatMs) {
        stopWith(
          {
            verdict: 'infra-error',
            step: 'worker',
            reason: `the queue was unreachable for ${Date.now() - lastBeat} ms (${messageOf(err)}); stopped before the queue requeues it`,
          },
          true,
        );
      }
    }
    await client.leases.renew(lease.id).catch((err: unknown) => {
      if (!isAgentUnavailable(err))
        stopWith(
          {
            verdict: 'infra-error',
            step: 'lease',
            reason: `lost the lease on ${lease.dut}: ${messageOf(err)}`,
          },
          true,
        );
    });
  };
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void beat().finally(() => {
      busy = false;
    });
  }, heartbeatMs);
  return { stop: () => clearInterval(timer) };
}
