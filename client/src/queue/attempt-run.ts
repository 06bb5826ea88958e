/**
 * One attempt at a queue job on a DUT the worker has leased: mark it running, run its steps under
 * a heartbeat, then log how it ended, release the lease, store the run report and record the end
 * (handed back, retried after an infra-error, or the job's end). After repeated infra-errors on a
 * DUT it is health-checked or quarantined.
 */
import type { TestCase } from '../../../protocol/src/test-cases.js';
import type { JigletClient } from '../jiglet-client.js';
import type { Lease } from '../lease-client.js';
import { renderReport } from '../report/render-report.js';
import { startHeartbeat } from './attempt-heartbeat.js';
import { runSteps } from './attempt-steps.js';
import { StepFailed } from './attempt-verdict.js';
import { INFRA_ERRORS_BEFORE_HEALTH_CHECK, type Verdict } from './queue-job.js';
import { QueueLogWriter } from './queue-log-writer.js';
import type { QueueJob } from './queue-store.js';
import { messageOf, type Outcome, retrying, type WorkerContext } from './worker-context.js';

/** Why a running job was stopped before its command finished. */
class Interrupted extends Error {
  constructor(
    readonly outcome: Outcome,
    readonly requeue: boolean,
  ) {
    super(outcome.reason);
  }
}

const STATE_OF: Record<Verdict, 'succeeded' | 'failed' | 'cancelled'> = {
  pass: 'succeeded',
  fail: 'failed',
  'infra-error': 'failed',
  timeout: 'failed',
  cancelled: 'cancelled',
};

/**
 * Runs the attempt `job.attempts` of `job` on `dut` under `lease`, through `client` (which
 * carries the lease while the steps run). `workerStopped` aborts when the worker stops: the job
 * then goes back to the queue.
 */
export async function runAttempt(
  ctx: WorkerContext,
  job: QueueJob,
  dut: string,
  lease: Lease,
  client: JigletClient,
  workerStopped: AbortSignal,
): Promise<void> {
  const attempt = job.attempts;
  const logs = new QueueLogWriter(ctx.store, job.id, attempt);
  const interrupt = new AbortController();
  const stopWith = (outcome: Outcome, requeue: boolean): void => {
    if (!interrupt.signal.aborted) interrupt.abort(new Interrupted(outcome, requeue));
  };
  const onStop = (): void =>
    stopWith(
      {
        verdict: 'infra-error',
        step: 'worker',
        reason: `worker ${ctx.name} stopped; the job goes back to the queue`,
      },
      true,
    );
  workerStopped.addEventListener('abort', onStop, { once: true });
  const heartbeat = startHeartbeat(ctx, job, lease, client, stopWith);
  let outcome: Outcome;
  let requeue = false;
  // What the command reported, for the attempt's report as well as the queue.
  const ran: { cases: TestCase[] } = { cases: [] };
  try {
    await retrying(ctx, () => ctx.store.markRunning(job.id, attempt, ctx.name, { leaseId: lease.id }));
    client.lease = lease.id;
    outcome = await runSteps(ctx, job, dut, lease, client, logs, interrupt.signal, ran);
  } catch (err) {
    const reason = interrupt.signal.reason;
    if (reason instanceof Interrupted) {
      outcome = reason.outcome;
      requeue = reason.requeue;
    } else if (err instanceof StepFailed) outcome = err.end;
    else outcome = { verdict: 'infra-error', step: 'worker', reason: messageOf(err) };
  } finally {
    heartbeat.stop();
    workerStopped.removeEventListener('abort', onStop);
    client.lease = undefined;
  }
  logs.note(
    `attempt ${attempt}: ${outcome.verdict}${outcome.step && outcome.verdict !== 'pass' ? ` at ${outcome.step}` : ''}${outcome.exitCode !== undefined ? ` (exit ${outcome.exitCode})` : ''}${outcome.reason ? `: ${outcome.reason}` : ''}`,
  );
  await logs.close();
  // The lease ends before the outcome is written: whoever sees the job finished may claim the DUT.
  await client.leases.release(lease.id).catch(() => undefined);
  await storeReport(ctx, job, attempt, lease, client, outcome, ran.cases);
  const recorded = await retrying(ctx, () => recordEnd(ctx, job, attempt, outcome, requeue));
  if (!recorded) ctx.log(`queue worker ${ctx.name}: job ${job.id} attempt ${attempt} was no longer ours`);
  if (recorded && outcome.verdict === 'infra-error' && outcome.step !== 'worker')
    await afterInfraError(ctx, client, dut);
}

/** Writes the attempt's end: handed back, retried after an infra-error, or the job's end. */
async function recordEnd(
  ctx: WorkerContext,
  job: QueueJob,
  attempt: number,
  outcome: Outcome,
  requeue: boolean,
): Promise<boolean> {
  const { store, name } = ctx;
  if (requeue) {
    return store.giveBack(job.id, attempt, name, outcome.reason ?? 'interrupted', outcome.step);
  }
  if (outcome.verdict === 'infra-error' && outcome.retry !== false) {
    return (await store.retry(job.id, attempt, name, outcome)) !== undefined;
  }
  return store.finish(job.id, attempt, name, {
    state: STATE_OF[outcome.verdict],
    verdict: outcome.verdict,
    step: outcome.step,
    exitCode: outcome.exitCode,
    error: outcome.reason,
    agentJobId: outcome.agentJobId,
  });
}

/**
 * After INFRA_ERRORS_BEFORE_HEALTH_CHECK infra-errors in a row on a DUT (LAVA's rule), runs its
 * health check, or marks it bad when it has none, so the queue stops feeding it jobs. Both need
 * the worker's identity to be an admin; when it is not, the log says what to do.
 */
async function afterInfraError(ctx: WorkerContext, client: JigletClient, dut: string): Promise<void> {
  try {
    const streak = await ctx.store.infraErrorStreak(ctx.agent, dut);
    if (streak === 0 || streak % INFRA_ERRORS_BEFORE_HEALTH_CHECK !== 0) return;
    const why = `${streak} queue attempts in a row ended in an infra-error on ${dut}`;
    const info = (await client.jig.duts()).find((d) => d.name === dut);
    if (info?.hasHealthCheck) {
      ctx.log(`queue worker ${ctx.name}: ${why}; running its health check`);
      const result = await client.jig.checkHealth(dut);
      ctx.log(
        `queue worker ${ctx.name}: health check of ${dut} ${result.passed ? 'passed' : 'failed; it is now bad'} (agent job ${result.jobId})`,
      );
    } else {
      await client.jig.setState(dut, 'bad', `${why}, and it has no health check; set it good when fixed`);
      ctx.log(`queue worker ${ctx.name}: ${why}; it has no health check, so it is now bad`);
    }
  } catch (err) {
    ctx.log(
      `queue worker ${ctx.name}: could not check or quarantine ${dut} after repeated infra-errors: ${messageOf(err)}; an admin should look at it (jigctl dut check ${dut})`,
    );
  }
}

/**
 * Stores the attempt's run report: the timeline of its lease, fetched once the lease has ended
 * (so the whole run is in it), as HTML. Bounded well inside the heartbeat expiry, which runs
 * from the last heartbeat; a report that cannot be made or stored is noted in the job's log and
 * changes nothing about the job.
 */
async function storeReport(
  ctx: WorkerContext,
  job: QueueJob,
  attempt: number,
  lease: Lease,
  client: JigletClient,
  outcome: Outcome,
  cases: readonly TestCase[],
): Promise<void> {
  try {
    const timeline = await client.records.timeline(
      { leaseId: lease.id },
      { deadlineMs: ctx.timing.expiryMs / 4 },
    );
    const html = renderReport(timeline, {
      title: `queue job ${job.id}, attempt ${attempt}, on ${lease.dut}`,
      agent: ctx.agent,
      verdict: { verdict: outcome.verdict, reason: outcome.reason, step: outcome.step },
      testCases: cases,
    });
    await ctx.store.saveReport(job.id, attempt, html);
  } catch (err) {
    ctx.log(`queue worker ${ctx.name}: job ${job.id}: no run report: ${messageOf(err)}`);
    const note = new QueueLogWriter(ctx.store, job.id, attempt);
    note.note(`no run report for this attempt: ${messageOf(err)}`);
    await note.close(Date.now() + ctx.timing.expiryMs / 4);
  }
}
