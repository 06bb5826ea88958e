/** Converts the supervisor's job records to the wire's Job message. */
import { type Job, type JobSpec, JobState } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { toWireTestCase } from '../../../protocol/src/test-case-wire.js';
import type { JobStateName } from '../jobs/job-state.js';
import type { JobView } from '../jobs/supervisor.js';

const STATES: Record<JobStateName, JobState> = {
  pending: JobState.JOB_STATE_PENDING,
  running: JobState.JOB_STATE_RUNNING,
  exited: JobState.JOB_STATE_EXITED,
  failed: JobState.JOB_STATE_FAILED,
  stopped: JobState.JOB_STATE_STOPPED,
  lost: JobState.JOB_STATE_LOST,
};

/** Wire state → internal state name, for filters. */
export function stateName(state: JobState): JobStateName | undefined {
  return (Object.keys(STATES) as JobStateName[]).find((k) => STATES[k] === state);
}

/**
 * The wire form of a job. Environment values can hold secrets, so only the owner and admins
 * see them; everyone else sees the names with redacted values.
 */
export function toWireJob(view: JobView, revealEnv: boolean): Job {
  const r = view.record;
  const env = revealEnv
    ? { ...r.spec.env }
    : Object.fromEntries(Object.keys(r.spec.env).map((k) => [k, '(redacted)']));
  const spec: JobSpec = {
    command: r.spec.command,
    args: [...r.spec.args],
    env,
    cwd: r.spec.cwd,
    dut: r.spec.dut,
    limits: {
      memoryBytes: BigInt(r.spec.limits.memoryBytes),
      cpuMillis: r.spec.limits.cpuMillis,
      pidsMax: r.spec.limits.pidsMax,
    },
    timeoutMs: BigInt(r.spec.timeoutMs),
    stdin: r.spec.stdin,
  };
  return {
    id: r.id,
    owner: r.owner,
    spec,
    state: STATES[r.state],
    stopReason: r.stopReason ?? '',
    exitCode: r.exitCode,
    signal: r.signal ?? '',
    oomKilled: r.oomKilled,
    error: r.error ?? '',
    pid: r.pid ?? 0,
    outputBytes: BigInt(view.outputBytes()),
    containment: r.containment,
    createdAt: new Date(r.createdAt),
    startedAt: r.startedAt === undefined ? undefined : new Date(r.startedAt),
    endedAt: r.endedAt === undefined ? undefined : new Date(r.endedAt),
    testCases: (r.testCases ?? []).map(toWireTestCase),
    resultsError: r.resultsError ?? '',
    title: r.title ?? '',
    stderrTail: r.stderrTail ?? '',
  };
}
