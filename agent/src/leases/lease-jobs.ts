/**
 * Jobs started under a lease end with it, whoever started them (issue 11). A call that carried a
 * lease binds the job it started to that lease once the job has an id; the lease manager hands
 * the bound ids to whoever acts on the lease's end (DutRuntime.leaseEnded), which stops them.
 */
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { Lease, LeaseManager } from './lease-manager.js';

/** Grace a job gets to end by itself when its lease ends, before its cgroup is killed. */
export const LEASE_STOP_GRACE_MS = 2000;

/**
 * Binds `jobId` to `lease` (nothing to do without one), and unbinds it when the job ends so a
 * week-long lease does not collect every job id. When the lease ended while the job was being
 * started, the job is stopped at once and the call fails saying so: no job outlives its lease.
 */
export async function bindJobToLease(opts: {
  leases: LeaseManager;
  supervisor: Supervisor;
  lease: Lease | undefined;
  jobId: string;
  log: Logger;
}): Promise<void> {
  const { leases, supervisor, lease, jobId, log } = opts;
  if (!lease) return;
  if (leases.bind(lease.id, jobId)) {
    const unbind = (): void => leases.unbind(lease.id, jobId);
    supervisor.ended(jobId).then(unbind, unbind);
    return;
  }
  await supervisor
    .stop(jobId, LEASE_STOP_GRACE_MS, 'lease')
    .catch((err: unknown) => log.warn({ err, job: jobId }, 'could not stop a job whose lease had ended'));
  throw failedPrecondition(
    `the lease on ${lease.dut} ended (${leases.endOf(lease.id) ?? 'expired, released or revoked'}) while job ${jobId} was starting; the job was stopped`,
  );
}
