/**
 * Stopping a job: SIGTERM to its whole tree, then after the grace period a kill of its cgroup,
 * and a bounded wait for its end. A process in uninterruptible sleep outlives SIGKILL; the stop
 * then says which processes are stuck and in what, instead of waiting forever.
 */
import type { Logger } from 'pino';
import { JigletError } from '../../../protocol/src/errors.js';
import { KILL_SETTLE_MS } from './cgroup-v2.js';
import type { Entry, Runtime } from './job-entry.js';
import type { StopReason } from './job-records.js';
import { assertTransition, howItEnded, isFinal } from './job-state.js';
import { killTree, signalTree, withDeadline } from './process-tree.js';
import { describeProcesses, inspectProcesses } from './stuck-processes.js';

/** Past grace + the kill's own settle time, how much longer a stop waits for the job to end. */
const STOP_MARGIN_MS = 1000;

/**
 * Stops the job of `entry` (no longer pending) and resolves once it has ended. A second stop
 * joins the first (its reason and grace stand). Throws JIGLET_E_ILLEGAL_TRANSITION for a job
 * that is over, saying how it ended, and JIGLET_E_DEADLINE_EXCEEDED for one that would not die.
 */
export async function stopJob(entry: Entry, graceMs: number, reason: StopReason, log: Logger): Promise<void> {
  const { record, runtime } = entry;
  const { id } = record;
  if (isFinal(record.state)) {
    const at = record.endedAt === undefined ? '' : ` at ${new Date(record.endedAt).toISOString()}`;
    throw new JigletError(
      'JIGLET_E_ILLEGAL_TRANSITION',
      `job ${id} already ended (${howItEnded(record)}${at})`,
    );
  }
  if (!runtime) {
    assertTransition(id, record.state, 'stopped');
    return;
  }
  if (record.stopReason === undefined) {
    record.stopReason = reason;
    runtime.giveUpAt = Date.now() + graceMs + KILL_SETTLE_MS + STOP_MARGIN_MS;
    signalTree(runtime, 'SIGTERM', log);
    runtime.killTimer = setTimeout(() => {
      killTree(runtime, log).catch((err) => log.error({ job: id, err }, 'kill failed'));
    }, graceMs);
  }
  // Bounded: a process in uninterruptible sleep outlives SIGKILL, and neither a StopJob caller
  // nor the agent's shutdown may wait on it forever. The job stays running until it does end.
  const wait = Math.max(STOP_MARGIN_MS, (runtime.giveUpAt ?? 0) - Date.now());
  if (!(await withDeadline(runtime.done, wait))) throw await stuckError(id, runtime, log);
}

/** The error for a job that outlived its stop's deadline, naming the processes left and their state. */
async function stuckError(id: string, rt: Runtime, log: Logger): Promise<JigletError> {
  let pids: number[] = [];
  try {
    pids = rt.cgroup ? await rt.cgroup.pids() : [];
  } catch {
    // The description below falls back on the leader.
  }
  if (pids.length === 0 && rt.child.pid !== undefined) pids = [rt.child.pid];
  const procs = await inspectProcesses(pids);
  log.error({ job: id, processes: procs }, 'job did not end after SIGKILL');
  return new JigletError(
    'JIGLET_E_DEADLINE_EXCEEDED',
    `job ${id} did not end after SIGKILL: ${describeProcesses(procs) || `pids ${pids.join(', ')}`}. ` +
      'A process in uninterruptible sleep (D) dies only once its I/O returns (a hung device or ' +
      'NFS server); the job stays running until then, and its end is recorded when it comes',
  );
}
