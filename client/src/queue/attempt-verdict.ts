/**
 * How an attempt's verdict is decided: from the agent's final record of the job's command (pass,
 * fail, timeout, or an infra-error when the command never ran), or from the step that failed
 * before the command could run — LAVA reports such failures as FAIL and its users cannot tell a
 * broken test from a broken lab; here they are `infra-error` and retried on another DUT.
 */
import { type Job, JobState } from '../../../protocol/gen/jiglet/v1/jobs.js';
import type { TestCase } from '../../../protocol/src/test-cases.js';
import { testCasesOf } from '../job-test-cases.js';
import type { AttemptEnd, RunStep } from './queue-job.js';

/** What a failed step was doing, as a person reads it in `queue status`. */
const STEP_WORDS: Record<RunStep, string> = {
  lease: 'leasing the DUT',
  flash: 'flashing the image',
  power: 'power cycling the DUT',
  boot: 'booting the DUT',
  command: 'starting the command',
  agent: 'talking to the agent',
  worker: 'the queue worker',
};

/** A step of the run failed before the test could run (the DUT never reached it). */
export class StepFailed extends Error {
  constructor(
    readonly step: RunStep,
    cause: unknown,
    /** False when another attempt cannot help (the image changed since it was submitted). */
    readonly retry = true,
  ) {
    super(`${STEP_WORDS[step]} failed: ${messageOf(cause)}`, { cause });
  }

  /** The attempt's end: an infra-error at this step. */
  get end(): AttemptEnd & { retry: boolean } {
    return { verdict: 'infra-error', step: this.step, reason: this.message, retry: this.retry };
  }
}

/** Runs one step, turning any failure into StepFailed (an interruption is passed on as is). */
export async function step<T>(name: RunStep, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (signal.aborted || err instanceof StepFailed) throw signal.aborted ? signal.reason : err;
    throw new StepFailed(name, err);
  }
}

/** The verdict of a command from the agent's final record of it. */
export function verdictOfCommand(done: Job, command: readonly string[], timeoutMs: number): AttemptEnd {
  const base = { step: 'command' as const, exitCode: done.exitCode, agentJobId: done.id };
  if (done.state === JobState.JOB_STATE_FAILED) {
    // The process never started (missing binary, cgroup setup): the test did not run.
    return {
      ...base,
      verdict: 'infra-error',
      reason: `the command could not start on the agent: ${done.error || 'no reason given'}`,
    };
  }
  if (done.stopReason === 'timeout') {
    return { ...base, verdict: 'timeout', reason: `timed out after ${timeoutMs} ms` };
  }
  if (done.stopReason === 'lease' || done.stopReason === 'shutdown') {
    return {
      ...base,
      step: done.stopReason === 'lease' ? 'lease' : 'agent',
      verdict: 'infra-error',
      reason:
        done.stopReason === 'lease'
          ? 'the lease on the DUT ended while the command ran, and the agent stopped it'
          : 'the agent shut down while the command ran',
    };
  }
  if (done.exitCode === 0) return { verdict: 'pass', exitCode: 0, agentJobId: done.id };
  const why =
    done.error ||
    (done.oomKilled
      ? 'was killed: out of memory'
      : done.signal
        ? `was killed by ${done.signal}`
        : `exited ${done.exitCode}`);
  return { ...base, verdict: 'fail', reason: `${command[0]} ${why}${failedCasesText(testCasesOf(done))}` };
}

/** "; 1 of 3 test cases failed: has the wifi firmware", naming at most three. */
function failedCasesText(cases: readonly TestCase[]): string {
  const failed = cases.filter((c) => c.status === 'failed' || c.status === 'error');
  if (failed.length === 0) return '';
  const names = failed.slice(0, 3).map((c) => c.name);
  const more = failed.length > 3 ? `, and ${failed.length - 3} more` : '';
  return `; ${failed.length} of ${cases.length} test cases failed: ${names.join(', ')}${more}`;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
