/**
 * The job lifecycle as an explicit state machine. Transitions are compare-and-set: a caller
 * names the state it expects to leave, so two racing finishers (exit vs. stop vs. timeout)
 * cannot both win.
 */
import { JigletError } from '../../../protocol/src/errors.js';
import { STOP_REASON_WORDS } from '../../../protocol/src/stop-reasons.js';

/** Lifecycle states; the last four are final. */
export type JobStateName = 'pending' | 'running' | 'exited' | 'failed' | 'stopped' | 'lost';

const TRANSITIONS: Readonly<Record<JobStateName, readonly JobStateName[]>> = {
  pending: ['running', 'failed', 'stopped', 'lost'],
  running: ['exited', 'stopped', 'failed', 'lost'],
  exited: [],
  failed: [],
  stopped: [],
  lost: [],
};

/** True once a job can no longer change. */
export function isFinal(state: JobStateName): boolean {
  return TRANSITIONS[state].length === 0;
}

/** Throws JIGLET_E_ILLEGAL_TRANSITION unless `from → to` is allowed. */
export function assertTransition(jobId: string, from: JobStateName, to: JobStateName): void {
  if (!TRANSITIONS[from].includes(to)) {
    throw new JigletError('JIGLET_E_ILLEGAL_TRANSITION', `job ${jobId} is ${from}; it cannot become ${to}`);
  }
}

/**
 * The one way a job changes state: compare-and-set. Throws JIGLET_E_ILLEGAL_TRANSITION when the
 * job is no longer in `from` (another finisher won) or when `from → to` is not allowed.
 */
export function compareAndSet(
  job: { id: string; state: JobStateName },
  from: JobStateName,
  to: JobStateName,
): void {
  if (job.state !== from) {
    throw new JigletError('JIGLET_E_ILLEGAL_TRANSITION', `job ${job.id} is ${job.state}, expected ${from}`);
  }
  assertTransition(job.id, from, to);
  job.state = to;
}

/** How a finished job ended, in words: "exited with code 0", "stopped by request", "killed by SIGKILL". */
export function howItEnded(job: {
  state: JobStateName;
  exitCode?: number;
  signal?: string;
  stopReason?: string;
  error?: string;
}): string {
  if (job.state === 'stopped') return `stopped ${STOP_REASON_WORDS[job.stopReason ?? ''] ?? 'by request'}`;
  if (job.state === 'failed') return job.error ? `failed: ${job.error}` : 'failed';
  if (job.state === 'lost') return 'lost (the agent restarted while it ran)';
  if (job.signal) return `killed by ${job.signal}`;
  return `exited with code ${job.exitCode ?? '?'}`;
}
