/**
 * How the queue's rows look in SQL and in TypeScript, and the statements that end an attempt
 * (shared by the store's methods): one place for the column list, the fence and the mapping.
 */
import { invalidArgument, notFound } from '../../../protocol/src/errors.js';
import type { Queryable } from './queue-db.js';
import {
  checkId,
  type FinalState,
  type JobState,
  type QueueJob,
  RUN_STEPS,
  type RunStep,
  VERDICTS,
  type Verdict,
} from './queue-job.js';

/** A queue_jobs row as the database gives it. */
export interface JobRow {
  id: string;
  state: JobState;
  labels: Record<string, string>;
  command: string[];
  image_path: string | null;
  image_sha256: string | null;
  timeout_ms: number;
  priority: number;
  max_attempts: number;
  attempts: number;
  submitted_by: string | null;
  submitted_at: Date;
  worker: string | null;
  agent: string | null;
  dut: string | null;
  lease_id: string | null;
  agent_job_id: string | null;
  claimed_at: Date | null;
  started_at: Date | null;
  heartbeat_at: Date | null;
  finished_at: Date | null;
  cancel_requested: boolean;
  exit_code: number | null;
  error: string | null;
  env: Record<string, string>;
  verdict: Verdict | null;
  verdict_reason: string | null;
  failed_step: RunStep | null;
  avoid: { agent: string; dut: string }[];
}

/** bigserial comes back as a string from pg and a number from PGlite: always text here. */
export const JOB_COLUMNS = `id::text AS id, state, labels, command, image_path, image_sha256, timeout_ms, priority,
  max_attempts, attempts, submitted_by, submitted_at, worker, agent, dut, lease_id, agent_job_id, claimed_at,
  started_at, heartbeat_at, finished_at, cancel_requested, exit_code, error, env, verdict, verdict_reason,
  failed_step, avoid`;
/** This worker's current attempt at the job, and nothing older or anyone else's. */
export const FENCE = 'id = $1 AND attempts = $2 AND worker = $3';

/** SQL for the database's now() minus the milliseconds in parameter `param`. */
export function msAgo(param: string): string {
  return `now() - ${param}::double precision * interval '1 millisecond'`;
}

/**
 * Takes jobs back from their worker, one statement: the jobs matching `where` (locked rows are
 * another caller's, skipped) go back to the queue with the attempt counted, or fail once every
 * attempt was lost, or end cancelled if that was asked; their attempt is closed as lost.
 * `reason` is an SQL expression over the job row.
 */
export function takeBackSql(where: string, reason: string, step = `'worker'`): string {
  return `WITH taken AS (
      SELECT id, attempts, max_attempts, worker, agent, dut, claimed_at, agent_job_id, ${reason} AS reason,
        ${step} AS step, CASE WHEN cancel_requested THEN 'cancelled' ELSE 'infra-error' END AS verdict,
        CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed'
             ELSE 'queued' END AS next
      FROM queue_jobs WHERE ${where}
      FOR UPDATE SKIP LOCKED
    ), moved AS (
      UPDATE queue_jobs j SET
        state = t.next,
        error = CASE t.next
          WHEN 'failed' THEN format('worker lost on every attempt (%s of %s)', t.attempts, t.max_attempts)
          WHEN 'cancelled' THEN 'cancelled; ' || t.reason
        END,
        verdict = CASE WHEN t.next = 'queued' THEN NULL ELSE t.verdict END,
        verdict_reason = CASE t.next
          WHEN 'failed' THEN format('%s (attempt %s of %s; the worker was lost on every attempt)', t.reason,
            t.attempts, t.max_attempts)
          WHEN 'cancelled' THEN 'cancelled; ' || t.reason
        END,
        failed_step = CASE WHEN t.next = 'queued' THEN NULL ELSE t.step END,
        finished_at = CASE WHEN t.next = 'queued' THEN NULL ELSE now() END,
        worker = CASE WHEN t.next = 'queued' THEN NULL ELSE j.worker END,
        agent = CASE WHEN t.next = 'queued' THEN NULL ELSE j.agent END,
        dut = CASE WHEN t.next = 'queued' THEN NULL ELSE j.dut END,
        lease_id = NULL, agent_job_id = NULL, claimed_at = NULL, started_at = NULL, heartbeat_at = NULL
      FROM taken t WHERE j.id = t.id
      RETURNING j.id, j.state
    ), lost AS (
      INSERT INTO queue_attempts (job_id, attempt, worker, agent, dut, started_at, ended_at, outcome, reason,
        verdict, step, agent_job_id)
      SELECT id, attempts, worker, agent, dut, claimed_at, now(), 'lost', reason, verdict, step, agent_job_id
      FROM taken
    )
    SELECT id::text AS id, state FROM moved ORDER BY id`;
}

/**
 * Ends attempt $2 of job $1 by worker $3 with an infra-error ($4 reason, $5 step, $6 exit code,
 * $7 agent job): queued again with the DUT added to those to avoid, or failed once every attempt
 * is used, or cancelled if that was asked; the attempt's row is written in the same statement.
 */
export const RETRY_SQL = `WITH cur AS (
         SELECT id, attempts, max_attempts, worker, agent, dut, claimed_at, coalesce($7::text, agent_job_id) AS agent_job_id,
           CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'failed'
                ELSE 'queued' END AS next
         FROM queue_jobs WHERE ${FENCE} AND state IN ('claimed', 'running') FOR UPDATE
       ), moved AS (
         UPDATE queue_jobs j SET
           state = c.next,
           verdict = CASE c.next WHEN 'queued' THEN NULL WHEN 'cancelled' THEN 'cancelled' ELSE 'infra-error' END,
           verdict_reason = CASE c.next WHEN 'queued' THEN NULL
             ELSE format('%s (attempt %s of %s)', $4::text, c.attempts, c.max_attempts) END,
           failed_step = CASE WHEN c.next = 'queued' THEN NULL ELSE $5::text END,
           error = CASE WHEN c.next = 'queued' THEN NULL ELSE $4::text END,
           exit_code = CASE WHEN c.next = 'queued' THEN NULL ELSE $6::integer END,
           finished_at = CASE WHEN c.next = 'queued' THEN NULL ELSE now() END,
           avoid = j.avoid || jsonb_build_array(jsonb_build_object('agent', c.agent, 'dut', c.dut)),
           worker = CASE WHEN c.next = 'queued' THEN NULL ELSE j.worker END,
           agent = CASE WHEN c.next = 'queued' THEN NULL ELSE j.agent END,
           dut = CASE WHEN c.next = 'queued' THEN NULL ELSE j.dut END,
           agent_job_id = CASE WHEN c.next = 'queued' THEN NULL ELSE c.agent_job_id END,
           lease_id = NULL, claimed_at = NULL, started_at = CASE WHEN c.next = 'queued' THEN NULL ELSE j.started_at END,
           heartbeat_at = NULL
         FROM cur c WHERE j.id = c.id
         RETURNING j.state
       ), closed AS (
         INSERT INTO queue_attempts (job_id, attempt, worker, agent, dut, started_at, ended_at, outcome, reason,
           verdict, step, exit_code, agent_job_id)
         SELECT id, attempts, worker, agent, dut, claimed_at, now(), 'failed', $4, 'infra-error', $5::text, $6::integer,
           agent_job_id
         FROM cur
       )
       SELECT state FROM moved`;

/** A job row as the store gives it out. */
export function toJob(r: JobRow): QueueJob {
  return {
    id: r.id,
    state: r.state,
    labels: r.labels,
    command: r.command,
    image:
      r.image_path !== null && r.image_sha256 !== null
        ? { path: r.image_path, sha256: r.image_sha256 }
        : undefined,
    timeoutMs: r.timeout_ms,
    priority: r.priority,
    maxAttempts: r.max_attempts,
    attempts: r.attempts,
    submittedBy: r.submitted_by ?? undefined,
    submittedAt: r.submitted_at,
    worker: r.worker ?? undefined,
    agent: r.agent ?? undefined,
    dut: r.dut ?? undefined,
    leaseId: r.lease_id ?? undefined,
    agentJobId: r.agent_job_id ?? undefined,
    claimedAt: r.claimed_at ?? undefined,
    startedAt: r.started_at ?? undefined,
    heartbeatAt: r.heartbeat_at ?? undefined,
    finishedAt: r.finished_at ?? undefined,
    cancelRequested: r.cancel_requested,
    exitCode: r.exit_code ?? undefined,
    error: r.error ?? undefined,
    env: r.env ?? {},
    verdict: r.verdict ?? undefined,
    verdictReason: r.verdict_reason ?? undefined,
    failedStep: r.failed_step ?? undefined,
    avoid: r.avoid ?? [],
  };
}

export const DEFAULT_VERDICT: Record<FinalState, Verdict> = {
  succeeded: 'pass',
  failed: 'fail',
  cancelled: 'cancelled',
};

export function checkVerdict(verdict: Verdict, step: RunStep | undefined): void {
  if (!VERDICTS.includes(verdict))
    throw invalidArgument(`unknown verdict "${verdict}": use ${VERDICTS.join(', ')}`);
  if (step !== undefined && !RUN_STEPS.includes(step))
    throw invalidArgument(`unknown step "${step}": use ${RUN_STEPS.join(', ')}`);
}

/** pg gives bytea as a Buffer, PGlite as a Uint8Array. */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** One job; notFound if there is none with this id. */
export async function jobById(db: Queryable, id: string): Promise<QueueJob> {
  const [row] = await db.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM queue_jobs WHERE id = $1`, [checkId(id)]);
  if (!row) throw notFound(`no queue job ${id}`);
  return toJob(row);
}
