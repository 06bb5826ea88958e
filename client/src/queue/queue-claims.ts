/**
 * A worker's hold on a queue job, from claim to end: claim, give back, mark running, heartbeat,
 * finish, retry after an infra-error, and the requeue of jobs whose worker went silent. Every
 * write after the claim is one statement fenced by (job id, attempt, worker), so a worker that
 * lost its job can no longer touch it; every time comparison uses the database's clock.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { Queryable } from './queue-db.js';
import {
  type AttemptEnd,
  type Claimant,
  checkId,
  checkLabels,
  checkName,
  type FinalState,
  type JobState,
  type QueueJob,
  type RunStep,
  STALE_DUT_MS,
  type Verdict,
} from './queue-job.js';
import {
  checkVerdict,
  DEFAULT_VERDICT,
  FENCE,
  JOB_COLUMNS,
  type JobRow,
  msAgo,
  RETRY_SQL,
  takeBackSql,
  toJob,
} from './queue-rows.js';

/**
 * Claims the most urgent queued job whose labels the DUT has, in one statement; undefined when
 * none fits. Locks nothing past its return: the worker leases the DUT afterwards. A job that had
 * an infra-error on this DUT waits for another one while any other DUT in service could run it.
 */
export async function claimNext(db: Queryable, who: Claimant): Promise<QueueJob | undefined> {
  for (const [what, v] of [
    ['worker', who.worker],
    ['agent', who.agent],
    ['dut', who.dut],
  ] as const) {
    checkName(what, v);
  }
  checkLabels('DUT labels', who.dutLabels, true);
  // The attempt's history row is written when it ends: the claim, which every worker races
  // for, stays a single-row update.
  const [row] = await db.query<JobRow>(
    `UPDATE queue_jobs
     SET state = 'claimed', worker = $1, agent = $2, dut = $3, attempts = attempts + 1,
         claimed_at = now(), heartbeat_at = now()
     WHERE id = (SELECT id FROM queue_jobs j WHERE state = 'queued' AND labels <@ $4::jsonb
                 AND NOT (j.avoid @> $5::jsonb AND EXISTS (
                   SELECT 1 FROM queue_duts d
                   WHERE j.labels <@ d.labels AND d.health = 'good' AND d.seen_at >= ${msAgo('$6')}
                     AND NOT j.avoid @> jsonb_build_array(jsonb_build_object('agent', d.agent, 'dut', d.name))))
                 ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1)
     RETURNING ${JOB_COLUMNS}`,
    [
      who.worker,
      who.agent,
      who.dut,
      JSON.stringify(who.dutLabels),
      JSON.stringify([{ agent: who.agent, dut: who.dut }]),
      STALE_DUT_MS,
    ],
  );
  return row && toJob(row);
}

/**
 * Gives back a claim whose DUT could not be leased after all: queued again, attempt not
 * counted (or cancelled, if that was asked meanwhile).
 */
export async function unclaim(db: Queryable, id: string, attempt: number, worker: string): Promise<boolean> {
  return fenced(
    db,
    `UPDATE queue_jobs
     SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
         finished_at = CASE WHEN cancel_requested THEN now() END,
         attempts = attempts - 1, worker = NULL, agent = NULL, dut = NULL, claimed_at = NULL, heartbeat_at = NULL
     WHERE ${FENCE} AND state = 'claimed' RETURNING id`,
    [checkId(id), attempt, worker],
  );
}

/** The DUT is leased and the job started on the agent. */
export async function markRunning(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
  run: { leaseId: string; agentJobId?: string },
): Promise<boolean> {
  return fenced(
    db,
    `UPDATE queue_jobs SET state = 'running', lease_id = $4, agent_job_id = coalesce($5, agent_job_id),
       started_at = now(), heartbeat_at = now()
     WHERE ${FENCE} AND state = 'claimed' RETURNING id`,
    [checkId(id), attempt, worker, run.leaseId, run.agentJobId ?? null],
  );
}

/** Records the agent's job id once it is known. */
export async function setAgentJob(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
  agentJobId: string,
): Promise<boolean> {
  return fenced(
    db,
    `UPDATE queue_jobs SET agent_job_id = $4 WHERE ${FENCE} AND state IN ('claimed', 'running') RETURNING id`,
    [checkId(id), attempt, worker, agentJobId],
  );
}

/** Keeps the claim alive; `ours: false` means the job was requeued or finished without us. */
export async function heartbeat(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
): Promise<{ ours: boolean; cancelRequested: boolean }> {
  const [row] = await db.query<{ cancel_requested: boolean }>(
    `UPDATE queue_jobs SET heartbeat_at = now()
     WHERE ${FENCE} AND state IN ('claimed', 'running') RETURNING cancel_requested`,
    [checkId(id), attempt, worker],
  );
  return { ours: row !== undefined, cancelRequested: row?.cancel_requested ?? false };
}

/** How an attempt ended, as its worker reports it. */
export interface FinishedAttempt {
  state: FinalState;
  exitCode?: number;
  error?: string;
  verdict?: Verdict;
  step?: RunStep;
  agentJobId?: string;
}

/**
 * Records how this worker's attempt ended, and so the job; false if the job is no longer this
 * attempt's. The verdict defaults from the state (succeeded: pass, failed: fail).
 */
export async function finish(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
  end: FinishedAttempt,
): Promise<boolean> {
  if (!['succeeded', 'failed', 'cancelled'].includes(end.state)) {
    throw invalidArgument(`a job finishes as succeeded, failed or cancelled, not "${end.state}"`);
  }
  const verdict = end.verdict ?? DEFAULT_VERDICT[end.state];
  checkVerdict(verdict, end.step);
  const [row] = await db.query<{ n: number }>(
    `WITH done AS (
       UPDATE queue_jobs SET state = $4, exit_code = $5, error = $6, finished_at = now(),
         verdict = $7, verdict_reason = $6, failed_step = $8, agent_job_id = coalesce($9, agent_job_id)
       WHERE ${FENCE} AND state IN ('claimed', 'running')
       RETURNING id, attempts, worker, agent, dut, claimed_at, agent_job_id
     ), closed AS (
       INSERT INTO queue_attempts (job_id, attempt, worker, agent, dut, started_at, ended_at, outcome, reason,
         verdict, step, exit_code, agent_job_id)
       SELECT id, attempts, worker, agent, dut, claimed_at, now(), $4, $6, $7, $8, $5, agent_job_id FROM done
     )
     SELECT count(*)::integer AS n FROM done`,
    [
      checkId(id),
      attempt,
      worker,
      end.state,
      end.exitCode ?? null,
      end.error ?? null,
      verdict,
      end.step ?? null,
      end.agentJobId ?? null,
    ],
  );
  return row!.n === 1;
}

/**
 * Ends this worker's attempt with an infra-error: the job goes back to the queue (the attempt
 * counted, this DUT to be avoided) or, once every attempt is used, ends failed with the
 * verdict infra-error; cancelled instead if that was asked. Resolves with the job's state now,
 * or undefined if the job was no longer this attempt's.
 */
export async function retry(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
  end: AttemptEnd,
): Promise<JobState | undefined> {
  checkVerdict('infra-error', end.step);
  const [row] = await db.query<{ state: JobState }>(RETRY_SQL, [
    checkId(id),
    attempt,
    worker,
    end.reason ?? 'infrastructure error',
    end.step ?? null,
    end.exitCode ?? null,
    end.agentJobId ?? null,
  ]);
  return row?.state;
}

/**
 * Takes back jobs whose worker stopped heartbeating for `expiryMs`: queued again (the lost
 * attempt stays counted), failed once every attempt was lost, cancelled if that was asked.
 * Rows another caller is handling are skipped, so every worker may run this.
 */
export async function requeueExpired(
  db: Queryable,
  expiryMs: number,
): Promise<{ requeued: string[]; failed: string[] }> {
  if (!Number.isFinite(expiryMs) || expiryMs < 0) {
    throw invalidArgument(`expiry must be ≥ 0 ms, not ${expiryMs}`);
  }
  const rows = await db.query<{ id: string; state: JobState }>(
    takeBackSql(
      `state IN ('claimed', 'running') AND heartbeat_at < ${msAgo('$1')}`,
      `format('worker %s stopped heartbeating', worker)`,
    ),
    [expiryMs],
  );
  return {
    requeued: rows.filter((r) => r.state === 'queued').map((r) => r.id),
    failed: rows.filter((r) => r.state !== 'queued').map((r) => r.id),
  };
}

/**
 * A worker that stops (shutdown) hands its attempt back at once instead of letting it expire:
 * queued again with the attempt counted, like an expired one. False if it was no longer ours.
 */
export async function giveBack(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
  reason: string,
  step: RunStep = 'worker',
): Promise<boolean> {
  checkVerdict('infra-error', step);
  const rows = await db.query(
    takeBackSql(`${FENCE} AND state IN ('claimed', 'running')`, `$4::text`, `$5::text`),
    [checkId(id), attempt, worker, reason, step],
  );
  return rows.length === 1;
}

/** Runs a fenced statement; true when it touched the one row it was meant for. */
async function fenced(db: Queryable, sql: string, params: unknown[]): Promise<boolean> {
  return (await db.query(sql, params)).length === 1;
}
