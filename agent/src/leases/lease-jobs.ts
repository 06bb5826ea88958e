/**
 * Jobs started under a lease end with it, whoever started them (issue 11). Starting a job takes
 * time (a spawn, a cgroup, a queued power-off before a flash), and the lease can end or the DUT be
 * leased by someone else meanwhile; so once the job has an id the fencing check runs again and,
 * in the same tick, the job is bound to the lease. The lease manager hands the bound ids to whoever
 * acts on the lease's end (DutRuntime.leaseEnded), which stops them.
 */
import type { Logger } from 'pino';
import { JigletError } from '../../../protocol/src/errors.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { LeaseCaller, LeaseManager } from './lease-manager.js';

/** Grace a job gets to end by itself when its lease ends, before its cgroup is killed. */
export const LEASE_STOP_GRACE_MS = 2000;

/**
 * Re-checks the fence of a call that started `jobId` on `dut` and binds the job to the lease the
 * call carried (unbinding it when the job ends, so a week-long lease does not collect every job
 * id). When the check now fails, the job is stopped at once and the call fails saying why: no job
 * outlives its lease, and none runs on a DUT leased to someone else.
 */
export async function fenceStartedJob(opts: {
  leases: LeaseManager;
  supervisor: Supervisor;
  dut: string;
  leaseId: string | undefined;
  caller: LeaseCaller;
  jobId: string;
  log: Logger;
}): Promise<void> {
  const { leases, supervisor, dut, leaseId, caller, jobId, log } = opts;
  let refusal: JigletError;
  try {
    const lease = leases.check(dut, leaseId, caller);
    if (!lease) return;
    leases.bind(lease.id, jobId); // the same tick as the check: the lease is held
    const unbind = (): void => leases.unbind(lease.id, jobId);
    supervisor.ended(jobId).then(unbind, unbind);
    return;
  } catch (err) {
    if (!(err instanceof JigletError)) throw err;
    refusal = new JigletError(err.code, `${err.message} (job ${jobId}, started meanwhile, was stopped)`);
  }
  await supervisor
    .stop(jobId, LEASE_STOP_GRACE_MS, 'lease')
    .catch((err: unknown) =>
      log.warn({ err, job: jobId }, 'could not stop a job its lease no longer covers'),
    );
  throw refusal;
}
