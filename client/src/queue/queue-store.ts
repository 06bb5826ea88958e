/**
 * The fleet queue's store: jig jobs, their attempts, logs and the DUT registry, in PostgreSQL or
 * the embedded PGlite. Every change a worker makes is one statement fenced by (job id, attempt,
 * worker), so a worker that lost its job can no longer touch it, and every time comparison uses
 * the database's clock, never a worker's.
 */
import { failedPrecondition, invalidArgument, notFound } from '../../../protocol/src/errors.js';
import type { TestCase } from '../../../protocol/src/test-cases.js';
import { migrate } from './migrations.js';
import { openQueueDb, type QueueDb, type QueueDbOptions } from './queue-db.js';
import { checkRunnable, placeOf } from './queue-insight.js';
import {
  type AttemptEnd,
  type Claimant,
  checkId,
  checkLabels,
  checkLimit,
  checkName,
  DEFAULT_LIST_LIMIT,
  DEFAULT_LOG_LIMIT,
  DEFAULT_MAX_ATTEMPTS,
  type DutReport,
  type FinalState,
  JOB_STATES,
  type JobSpec,
  type JobState,
  LOG_CHANNEL,
  type LogChunk,
  MAX_LIST_LIMIT,
  MAX_LOG_LIMIT,
  MAX_REPORT_BYTES,
  type QueueAttempt,
  type QueueJob,
  type QueuePlace,
  type QueueStats,
  type RunStep,
  STALE_DUT_MS,
  SUBMIT_CHANNEL,
  type Verdict,
  validateSpec,
} from './queue-job.js';
import { type AttemptResults, readTestCases, saveTestCases } from './queue-results.js';

export * from './queue-job.js';

import {
  asBuffer,
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

/** The fleet queue over one database. */
export class QueueStore {
  /** Over an open database whose schema is migrated. */
  constructor(readonly db: QueueDb) {}

  /** Opens the database at `url` and brings its schema up to date. */
  static async open(url: string, opts?: QueueDbOptions): Promise<QueueStore> {
    const db = await openQueueDb(url, opts);
    try {
      await migrate(db);
    } catch (err) {
      await db.close();
      throw err;
    }
    return new QueueStore(db);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  /** Queues a job; throws invalidArgument with what is wrong in `spec`. */
  async submit(spec: JobSpec): Promise<QueueJob> {
    validateSpec(spec);
    const [row] = await this.db.query<JobRow>(
      `WITH submitted AS (
         INSERT INTO queue_jobs (labels, command, image_path, image_sha256, timeout_ms, priority, max_attempts,
           submitted_by, env)
         VALUES ($1::jsonb, $2::text[], $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING *
       )
       SELECT ${JOB_COLUMNS}, pg_notify('${SUBMIT_CHANNEL}', id::text) FROM submitted`,
      [
        JSON.stringify(spec.labels),
        spec.command,
        spec.image?.path ?? null,
        spec.image?.sha256 ?? null,
        spec.timeoutMs,
        spec.priority ?? 0,
        spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        spec.submittedBy ?? null,
        JSON.stringify(spec.env ?? {}),
      ],
    );
    return toJob(row!);
  }

  /** One job; notFound if there is none with this id. */
  async get(id: string): Promise<QueueJob> {
    const [row] = await this.db.query<JobRow>(`SELECT ${JOB_COLUMNS} FROM queue_jobs WHERE id = $1`, [
      checkId(id),
    ]);
    if (!row) throw notFound(`no queue job ${id}`);
    return toJob(row);
  }

  /** Jobs, newest first, optionally only in some states. */
  async list(opts: { states?: JobState[]; limit?: number } = {}): Promise<QueueJob[]> {
    const states = opts.states ?? null;
    for (const s of states ?? []) {
      if (!JOB_STATES.includes(s))
        throw invalidArgument(`unknown job state "${s}": use ${JOB_STATES.join(', ')}`);
    }
    const limit = checkLimit(opts.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT);
    const rows = await this.db.query<JobRow>(
      `SELECT ${JOB_COLUMNS} FROM queue_jobs WHERE ($1::text[] IS NULL OR state = ANY ($1::text[]))
       ORDER BY id DESC LIMIT $2`,
      [states, limit],
    );
    return rows.map(toJob);
  }

  /**
   * Claims the most urgent queued job whose labels the DUT has, in one statement; undefined when
   * none fits. Locks nothing past its return: the worker leases the DUT afterwards. A job that had
   * an infra-error on this DUT waits for another one while any other DUT in service could run it.
   */
  async claimNext(who: Claimant): Promise<QueueJob | undefined> {
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
    const [row] = await this.db.query<JobRow>(
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
  async unclaim(id: string, attempt: number, worker: string): Promise<boolean> {
    return this.#fenced(
      `UPDATE queue_jobs
       SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
           finished_at = CASE WHEN cancel_requested THEN now() END,
           attempts = attempts - 1, worker = NULL, agent = NULL, dut = NULL, claimed_at = NULL, heartbeat_at = NULL
       WHERE ${FENCE} AND state = 'claimed' RETURNING id`,
      [checkId(id), attempt, worker],
    );
  }

  /** The DUT is leased and the job started on the agent. */
  async markRunning(
    id: string,
    attempt: number,
    worker: string,
    run: { leaseId: string; agentJobId?: string },
  ): Promise<boolean> {
    return this.#fenced(
      `UPDATE queue_jobs SET state = 'running', lease_id = $4, agent_job_id = coalesce($5, agent_job_id),
         started_at = now(), heartbeat_at = now()
       WHERE ${FENCE} AND state = 'claimed' RETURNING id`,
      [checkId(id), attempt, worker, run.leaseId, run.agentJobId ?? null],
    );
  }

  /** Records the agent's job id once it is known. */
  async setAgentJob(id: string, attempt: number, worker: string, agentJobId: string): Promise<boolean> {
    return this.#fenced(
      `UPDATE queue_jobs SET agent_job_id = $4 WHERE ${FENCE} AND state IN ('claimed', 'running') RETURNING id`,
      [checkId(id), attempt, worker, agentJobId],
    );
  }

  /** Keeps the claim alive; `ours: false` means the job was requeued or finished without us. */
  async heartbeat(
    id: string,
    attempt: number,
    worker: string,
  ): Promise<{ ours: boolean; cancelRequested: boolean }> {
    const [row] = await this.db.query<{ cancel_requested: boolean }>(
      `UPDATE queue_jobs SET heartbeat_at = now()
       WHERE ${FENCE} AND state IN ('claimed', 'running') RETURNING cancel_requested`,
      [checkId(id), attempt, worker],
    );
    return { ours: row !== undefined, cancelRequested: row?.cancel_requested ?? false };
  }

  /**
   * Records how this worker's attempt ended, and so the job; false if the job is no longer this
   * attempt's. The verdict defaults from the state (succeeded: pass, failed: fail).
   */
  async finish(
    id: string,
    attempt: number,
    worker: string,
    end: {
      state: FinalState;
      exitCode?: number;
      error?: string;
      verdict?: Verdict;
      step?: RunStep;
      agentJobId?: string;
    },
  ): Promise<boolean> {
    if (!['succeeded', 'failed', 'cancelled'].includes(end.state)) {
      throw invalidArgument(`a job finishes as succeeded, failed or cancelled, not "${end.state}"`);
    }
    const verdict = end.verdict ?? DEFAULT_VERDICT[end.state];
    checkVerdict(verdict, end.step);
    const [row] = await this.db.query<{ n: number }>(
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
  async retry(id: string, attempt: number, worker: string, end: AttemptEnd): Promise<JobState | undefined> {
    checkVerdict('infra-error', end.step);
    const [row] = await this.db.query<{ state: JobState }>(RETRY_SQL, [
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
   * How many of the DUT's latest attempts in a row ended in an infra-error it could be blamed
   * for (a lost or stopped worker is not the DUT's fault and neither counts nor breaks the run).
   */
  async infraErrorStreak(agent: string, dut: string): Promise<number> {
    const rows = await this.db.query<{ verdict: Verdict | null; step: RunStep | null }>(
      `SELECT verdict, step FROM queue_attempts WHERE agent = $1 AND dut = $2
       ORDER BY ended_at DESC LIMIT 100`,
      [agent, dut],
    );
    let streak = 0;
    for (const r of rows) {
      if (r.step === 'worker') continue;
      if (r.verdict !== 'infra-error') break;
      streak++;
    }
    return streak;
  }

  /**
   * Takes back jobs whose worker stopped heartbeating for `expiryMs`: queued again (the lost
   * attempt stays counted), failed once every attempt was lost, cancelled if that was asked.
   * Rows another caller is handling are skipped, so every worker may run this.
   */
  async requeueExpired(expiryMs: number): Promise<{ requeued: string[]; failed: string[] }> {
    if (!Number.isFinite(expiryMs) || expiryMs < 0) {
      throw invalidArgument(`expiry must be ≥ 0 ms, not ${expiryMs}`);
    }
    const rows = await this.db.query<{ id: string; state: JobState }>(
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
  async giveBack(
    id: string,
    attempt: number,
    worker: string,
    reason: string,
    step: RunStep = 'worker',
  ): Promise<boolean> {
    checkVerdict('infra-error', step);
    const rows = await this.db.query(
      takeBackSql(`${FENCE} AND state IN ('claimed', 'running')`, `$4::text`, `$5::text`),
      [checkId(id), attempt, worker, reason, step],
    );
    return rows.length === 1;
  }

  /** Calls `onJob` with the id of each job submitted from now on; returns how to stop (undefined if unsupported). */
  onSubmit(onJob: (id: string) => void): Promise<(() => Promise<void>) | undefined> {
    return this.db.listen(SUBMIT_CHANNEL, onJob);
  }

  /** Cancels a queued job at once, or asks the worker of a claimed or running one to stop it. */
  async cancel(id: string): Promise<QueueJob> {
    const [row] = await this.db.query<JobRow>(
      `UPDATE queue_jobs SET
         state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
         finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
         cancel_requested = cancel_requested OR state <> 'queued'
       WHERE id = $1 AND state IN ('queued', 'claimed', 'running')
       RETURNING ${JOB_COLUMNS}`,
      [checkId(id)],
    );
    if (row) return toJob(row);
    const job = await this.get(id);
    throw failedPrecondition(`job ${id} already ${job.state}`);
  }

  /** Appends output of one attempt and wakes up anyone following the job's log. */
  async appendLog(id: string, attempt: number, data: Buffer): Promise<string> {
    try {
      const [row] = await this.db.query<{ seq: string }>(
        `WITH appended AS (
           INSERT INTO queue_logs (job_id, attempt, data) VALUES ($1, $2, $3) RETURNING seq, job_id
         )
         SELECT seq::text AS seq, pg_notify('${LOG_CHANNEL}', job_id::text) FROM appended`,
        [checkId(id), attempt, data],
      );
      return row!.seq;
    } catch (err) {
      if ((err as { code?: unknown }).code === '23503') throw notFound(`no queue job ${id}`);
      throw err;
    }
  }

  /**
   * Output after `afterSeq`, in order. One worker appends to a job at a time, so sequence numbers
   * of one job commit in order and a follower that resumes after the last seq misses nothing.
   */
  async readLog(id: string, opts: { afterSeq?: string; limit?: number } = {}): Promise<LogChunk[]> {
    const after = opts.afterSeq ?? '0';
    if (!/^\d{1,19}$/.test(after)) throw invalidArgument(`log position "${after}" is not a number`);
    const rows = await this.db.query<{ seq: string; attempt: number; data: Uint8Array }>(
      `SELECT seq::text AS seq, attempt, data FROM queue_logs WHERE job_id = $1 AND seq > $2
       ORDER BY seq LIMIT $3`,
      [checkId(id), after, checkLimit(opts.limit, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT)],
    );
    return rows.map((r) => ({ seq: r.seq, attempt: r.attempt, data: asBuffer(r.data) }));
  }

  /** Every attempt at a job, oldest first; the current one (from the job row) has no end yet. */
  async attempts(id: string): Promise<QueueAttempt[]> {
    await this.get(id);
    const rows = await this.db.query<{
      attempt: number;
      worker: string;
      agent: string;
      dut: string;
      started_at: Date;
      ended_at: Date | null;
      outcome: FinalState | 'lost' | null;
      reason: string | null;
      verdict: Verdict | null;
      step: RunStep | null;
      exit_code: number | null;
      agent_job_id: string | null;
    }>(
      `SELECT attempt, worker, agent, dut, started_at, ended_at, outcome, reason, verdict, step, exit_code,
         agent_job_id
       FROM queue_attempts WHERE job_id = $1
       UNION ALL
       SELECT attempts, worker, agent, dut, claimed_at, NULL, NULL, NULL, NULL, NULL, NULL, agent_job_id
       FROM queue_jobs WHERE id = $1 AND state IN ('claimed', 'running')
       ORDER BY attempt`,
      [id],
    );
    return rows.map((r) => ({
      attempt: r.attempt,
      worker: r.worker,
      agent: r.agent,
      dut: r.dut,
      startedAt: r.started_at,
      endedAt: r.ended_at ?? undefined,
      outcome: r.outcome ?? undefined,
      reason: r.reason ?? undefined,
      verdict: r.verdict ?? undefined,
      step: r.step ?? undefined,
      exitCode: r.exit_code ?? undefined,
      agentJobId: r.agent_job_id ?? undefined,
    }));
  }

  /** Stores the run report of one attempt (HTML), replacing one stored before for it. */
  async saveReport(id: string, attempt: number, html: string): Promise<void> {
    if (!Number.isInteger(attempt) || attempt < 1)
      throw invalidArgument(`attempt must be 1 or more, not ${attempt}`);
    const bytes = Buffer.byteLength(html);
    if (bytes > MAX_REPORT_BYTES)
      throw invalidArgument(`a run report is at most ${MAX_REPORT_BYTES} bytes; this one is ${bytes}`);
    try {
      await this.db.query(
        `INSERT INTO queue_reports (job_id, attempt, html) VALUES ($1, $2, $3)
         ON CONFLICT (job_id, attempt) DO UPDATE SET html = excluded.html, created_at = now()`,
        [checkId(id), attempt, html],
      );
    } catch (err) {
      if ((err as { code?: unknown }).code === '23503') throw notFound(`no queue job ${id}`);
      throw err;
    }
  }

  /** The run report of an attempt (default: the latest one that has a report); notFound if none. */
  async getReport(id: string, attempt?: number): Promise<{ attempt: number; html: string; createdAt: Date }> {
    const [row] = await this.db.query<{ attempt: number; html: string; created_at: Date }>(
      `SELECT attempt, html, created_at FROM queue_reports
       WHERE job_id = $1 AND ($2::integer IS NULL OR attempt = $2) ORDER BY attempt DESC LIMIT 1`,
      [checkId(id), attempt ?? null],
    );
    if (row) return { attempt: row.attempt, html: row.html, createdAt: row.created_at };
    await this.get(id);
    throw notFound(
      `queue job ${id} has no run report${attempt !== undefined ? ` for attempt ${attempt}` : ''} (its worker stores one when an attempt ends)`,
    );
  }

  /** Stores the test cases an attempt reported (at most MAX_TEST_CASES); resolves with how many were dropped. */
  saveTestCases(id: string, attempt: number, cases: readonly TestCase[]): Promise<number> {
    return saveTestCases(this.db, id, attempt, cases);
  }

  /** The test cases of an attempt (default: the latest). */
  testCases(id: string, attempt?: number): Promise<AttemptResults> {
    return readTestCases(this.db, id, attempt);
  }

  /** Refuses labels no registered DUT has; warns when none is registered or all matching are out of service. */
  checkRunnable(labels: Record<string, string>): Promise<{ warning?: string }> {
    checkLabels('labels', labels, false);
    return checkRunnable(this.db, labels);
  }

  /** A queued job's place in line, the DUTs that could run it and an estimated start. */
  async place(id: string): Promise<QueuePlace> {
    return placeOf(this.db, await this.get(id));
  }

  /** Replaces what the registry knows about one agent's DUTs (stamped with the database's time). */
  async reportDuts(agent: string, worker: string, duts: DutReport[]): Promise<void> {
    checkName('agent', agent);
    checkName('worker', worker);
    for (const d of duts) {
      checkName('DUT name', d.name);
      checkLabels(`labels of DUT ${d.name}`, d.labels, true);
      if (!['good', 'bad', 'maintenance'].includes(d.health)) {
        throw invalidArgument(`health of DUT ${d.name} must be good, bad or maintenance, not "${d.health}"`);
      }
    }
    await this.db.query(
      `WITH input AS (
         SELECT * FROM jsonb_to_recordset($3::jsonb) AS x (name text, labels jsonb, health text, leased boolean)
       ), upserted AS (
         INSERT INTO queue_duts (agent, name, worker, labels, health, leased, seen_at)
         SELECT $1::text, name, $2::text, labels, health, leased, now() FROM input
         ON CONFLICT (agent, name) DO UPDATE SET worker = excluded.worker, labels = excluded.labels,
           health = excluded.health, leased = excluded.leased, seen_at = excluded.seen_at
       )
       DELETE FROM queue_duts WHERE agent = $1::text AND name NOT IN (SELECT name FROM input)`,
      [agent, worker, JSON.stringify(duts.map((d) => ({ ...d, leased: Boolean(d.leased) })))],
    );
  }

  /** Queue depth and DUT supply per label set; DUTs not reported for `staleMs` count as offline. */
  async stats(opts: { staleMs?: number } = {}): Promise<QueueStats> {
    const staleMs = opts.staleMs ?? STALE_DUT_MS;
    const sets = await this.db.query<{
      labels: Record<string, string>;
      queued: number;
      running: number;
      idle: number;
      busy: number;
      quarantined: number;
      offline: number;
    }>(
      `WITH sets AS (
         SELECT labels, count(*) FILTER (WHERE state = 'queued')::integer AS queued,
                count(*) FILTER (WHERE state <> 'queued')::integer AS running
         FROM queue_jobs WHERE state IN ('queued', 'claimed', 'running') GROUP BY labels
       ), duts AS (
         SELECT labels, health, leased, seen_at < ${msAgo('$1')} AS stale FROM queue_duts
       )
       SELECT s.labels, s.queued, s.running,
         count(*) FILTER (WHERE d.stale)::integer AS offline,
         count(*) FILTER (WHERE NOT d.stale AND d.health <> 'good')::integer AS quarantined,
         count(*) FILTER (WHERE NOT d.stale AND d.health = 'good' AND d.leased)::integer AS busy,
         count(*) FILTER (WHERE NOT d.stale AND d.health = 'good' AND NOT d.leased)::integer AS idle
       FROM sets s LEFT JOIN duts d ON s.labels <@ d.labels
       GROUP BY s.labels, s.queued, s.running
       ORDER BY s.queued DESC, s.running DESC`,
      [staleMs],
    );
    const byState = await this.db.query<{ state: JobState; n: number }>(
      'SELECT state, count(*)::integer AS n FROM queue_jobs GROUP BY state',
    );
    const totals = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    for (const { state, n } of byState) totals[state] = n;
    return {
      labelSets: sets.map(({ labels, queued, running, ...duts }) => ({ labels, queued, running, duts })),
      totals,
    };
  }

  async #fenced(sql: string, params: unknown[]): Promise<boolean> {
    return (await this.db.query(sql, params)).length === 1;
  }
}
