/**
 * What happens between a job's leader exiting and the job being over: whatever it left behind gets
 * SIGTERM and the grace period (like a stop), its pipes are drained, its cgroup is read for an OOM
 * kill and removed, and the test cases it left in $JIGLET_RESULTS are read. Node's 'close' alone
 * is not job exit, because a grandchild can hold the pipes open.
 */
import type { Logger } from 'pino';
import type { StderrTail } from '../output/stderr-tail.js';
import type { Runtime } from './job-entry.js';
import type { JobRecord } from './job-records.js';
import { readJobResults } from './job-results.js';
import { signalTree, withDeadline } from './process-tree.js';

/** Time between SIGTERM and SIGKILL when the client names none. */
export const DEFAULT_GRACE_MS = 5000;
/** How long pipes may stay open after the tree is gone (only matters without a cgroup). */
const PIPE_DRAIN_MS = 2000;

/** How the leader ended. */
export interface LeaderExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Resolves when the job's leader has exited and its tree, pipes and cgroup are cleaned up.
 * Sets `record.oomKilled`, and `record.error` when the cleanup failed; never throws, since the
 * job must still reach a final state, or its followers would wait forever.
 */
export async function cleanUpAfterExit(record: JobRecord, rt: Runtime, log: Logger): Promise<LeaderExit> {
  const { child, cgroup, output } = rt;
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('exit', (c, s) => resolve([c, s]));
  });
  try {
    // The leader is gone; whatever it left behind gets SIGTERM and the grace period, like a stop.
    if (cgroup && !(await cgroup.isEmpty())) {
      signalTree(rt, 'SIGTERM', log);
      if (!(await cgroup.waitEmpty(DEFAULT_GRACE_MS))) await cgroup.killAll();
    }
    const drained = await withDeadline(output.closed, PIPE_DRAIN_MS);
    if (!drained) {
      // Only possible without a cgroup: something escaped the process group and holds the pipes.
      signalTree(rt, 'SIGKILL', log);
      // Bounded too: the job must reach a final state even if the writer no longer answers.
      await withDeadline(output.destroy(), PIPE_DRAIN_MS);
    }
    record.oomKilled = cgroup ? await cgroup.oomKilled() : false;
    await cgroup?.remove();
  } catch (err) {
    record.error ??= `cleaning up after the job failed: ${(err as Error).message}`;
    log.error({ job: record.id, err }, 'job cleanup failed');
  } finally {
    clearTimeout(rt.timeout);
    clearTimeout(rt.killTimer);
  }
  // Before the state changes: whoever hears of the end finds the cases on the record.
  await readResults(record, rt, log);
  return { code, signal };
}

/**
 * Puts how the job ended on its record (exit code, signal, the stderr tail of one that did not
 * succeed, the end time) and returns the state it ends in: stopped when a stop was asked.
 */
export function putOutcome(
  record: JobRecord,
  exit: LeaderExit,
  stderrTail: StderrTail,
): 'stopped' | 'exited' {
  const to = record.stopReason ? 'stopped' : 'exited';
  if (exit.code !== null) record.exitCode = exit.code;
  if (exit.signal !== null) record.signal = exit.signal;
  if (to !== 'exited' || exit.code !== 0) {
    const tail = stderrTail.text();
    if (tail) record.stderrTail = tail;
  }
  record.endedAt = Date.now();
  return to;
}

/** Puts the job's test cases (and what could not be read) on its record; never throws. */
async function readResults(record: JobRecord, rt: Runtime, log: Logger): Promise<void> {
  if (!rt.results) return;
  try {
    const { cases, error } = await readJobResults(rt.results.dir, { uid: rt.results.uid });
    if (cases.length > 0) record.testCases = cases;
    if (error) record.resultsError = error;
  } catch (err) {
    record.resultsError = `the agent could not read $JIGLET_RESULTS: ${(err as Error).message}`;
    log.error({ job: record.id, err }, 'reading test results failed');
  }
}
