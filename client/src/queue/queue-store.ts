/**
 * The fleet queue's store: jig jobs, their attempts, logs, reports and the DUT registry, in
 * PostgreSQL or the embedded PGlite. This file holds the jobs themselves (submit, read, cancel)
 * and is the one face callers use; each other concern lives in its own file: a worker's claim
 * and its fenced writes (queue-claims.ts), attempt history (queue-attempts.ts), output
 * (queue-logs.ts), run reports (queue-reports.ts), test cases (queue-results.ts) and the DUT
 * registry with the queue's stats (dut-registry.ts).
 */
import { failedPrecondition, invalidArgument } from '../../../protocol/src/errors.js';
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
  DEFAULT_LIST_LIMIT,
  DEFAULT_MAX_ATTEMPTS,
  type DutReport,
  JOB_STATES,
  type JobSpec,
  type JobState,
  type LogChunk,
  MAX_LIST_LIMIT,
  type QueueAttempt,
  type QueueJob,
  type QueuePlace,
  type QueueStats,
  type RunStep,
  SUBMIT_CHANNEL,
  validateSpec,
} from './queue-job.js';
import { type AttemptResults, readTestCases, saveTestCases } from './queue-results.js';

export * from './queue-job.js';

import * as registry from './dut-registry.js';
import * as attempts from './queue-attempts.js';
import * as claims from './queue-claims.js';
import * as logs from './queue-logs.js';
import * as reports from './queue-reports.js';
import { JOB_COLUMNS, type JobRow, jobById, toJob } from './queue-rows.js';

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
    return jobById(this.db, id);
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
  claimNext(who: Claimant): Promise<QueueJob | undefined> {
    return claims.claimNext(this.db, who);
  }

  /**
   * Gives back a claim whose DUT could not be leased after all: queued again, attempt not
   * counted (or cancelled, if that was asked meanwhile).
   */
  unclaim(id: string, attempt: number, worker: string): Promise<boolean> {
    return claims.unclaim(this.db, id, attempt, worker);
  }

  /** The DUT is leased and the job started on the agent. */
  markRunning(
    id: string,
    attempt: number,
    worker: string,
    run: { leaseId: string; agentJobId?: string },
  ): Promise<boolean> {
    return claims.markRunning(this.db, id, attempt, worker, run);
  }

  /** Records the agent's job id once it is known. */
  setAgentJob(id: string, attempt: number, worker: string, agentJobId: string): Promise<boolean> {
    return claims.setAgentJob(this.db, id, attempt, worker, agentJobId);
  }

  /** Keeps the claim alive; `ours: false` means the job was requeued or finished without us. */
  heartbeat(
    id: string,
    attempt: number,
    worker: string,
  ): Promise<{ ours: boolean; cancelRequested: boolean }> {
    return claims.heartbeat(this.db, id, attempt, worker);
  }

  /**
   * Records how this worker's attempt ended, and so the job; false if the job is no longer this
   * attempt's. The verdict defaults from the state (succeeded: pass, failed: fail).
   */
  finish(id: string, attempt: number, worker: string, end: claims.FinishedAttempt): Promise<boolean> {
    return claims.finish(this.db, id, attempt, worker, end);
  }

  /**
   * Ends this worker's attempt with an infra-error: the job goes back to the queue (the attempt
   * counted, this DUT to be avoided) or, once every attempt is used, ends failed with the
   * verdict infra-error; cancelled instead if that was asked. Resolves with the job's state now,
   * or undefined if the job was no longer this attempt's.
   */
  retry(id: string, attempt: number, worker: string, end: AttemptEnd): Promise<JobState | undefined> {
    return claims.retry(this.db, id, attempt, worker, end);
  }

  /**
   * How many of the DUT's latest attempts in a row ended in an infra-error it could be blamed
   * for (a lost or stopped worker is not the DUT's fault and neither counts nor breaks the run).
   */
  infraErrorStreak(agent: string, dut: string): Promise<number> {
    return attempts.infraErrorStreak(this.db, agent, dut);
  }

  /**
   * Takes back jobs whose worker stopped heartbeating for `expiryMs`: queued again (the lost
   * attempt stays counted), failed once every attempt was lost, cancelled if that was asked.
   * Rows another caller is handling are skipped, so every worker may run this.
   */
  requeueExpired(expiryMs: number): Promise<{ requeued: string[]; failed: string[] }> {
    return claims.requeueExpired(this.db, expiryMs);
  }

  /**
   * A worker that stops (shutdown) hands its attempt back at once instead of letting it expire:
   * queued again with the attempt counted, like an expired one. False if it was no longer ours.
   */
  giveBack(
    id: string,
    attempt: number,
    worker: string,
    reason: string,
    step: RunStep = 'worker',
  ): Promise<boolean> {
    return claims.giveBack(this.db, id, attempt, worker, reason, step);
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
  appendLog(id: string, attempt: number, data: Buffer): Promise<string> {
    return logs.appendLog(this.db, id, attempt, data);
  }

  /**
   * Output after `afterSeq`, in order. One worker appends to a job at a time, so sequence numbers
   * of one job commit in order and a follower that resumes after the last seq misses nothing.
   */
  readLog(id: string, opts: { afterSeq?: string; limit?: number } = {}): Promise<LogChunk[]> {
    return logs.readLog(this.db, id, opts);
  }

  /** Every attempt at a job, oldest first; the current one (from the job row) has no end yet. */
  attempts(id: string): Promise<QueueAttempt[]> {
    return attempts.attempts(this.db, id);
  }

  /** Stores the run report of one attempt (HTML), replacing one stored before for it. */
  saveReport(id: string, attempt: number, html: string): Promise<void> {
    return reports.saveReport(this.db, id, attempt, html);
  }

  /** The run report of an attempt (default: the latest one that has a report); notFound if none. */
  getReport(id: string, attempt?: number): Promise<{ attempt: number; html: string; createdAt: Date }> {
    return reports.getReport(this.db, id, attempt);
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
  reportDuts(agent: string, worker: string, duts: DutReport[]): Promise<void> {
    return registry.reportDuts(this.db, agent, worker, duts);
  }

  /** Queue depth and DUT supply per label set; DUTs not reported for `staleMs` count as offline. */
  stats(opts: { staleMs?: number } = {}): Promise<QueueStats> {
    return registry.stats(this.db, opts);
  }
}
