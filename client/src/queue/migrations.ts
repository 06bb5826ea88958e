/**
 * The queue's schema, as ordered migrations. Each applies in its own transaction under one
 * advisory lock, so any number of queue workers may start at once against the same database.
 * Never edit a released migration: add the next one.
 */
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { Queryable, QueueDb } from './queue-db.js';

/** One schema step. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** 'jigl' in ASCII: the advisory lock every migrating worker takes (PGlite accepts it too). */
const MIGRATION_LOCK = 0x6a69676c;

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs, attempts, logs and DUTs',
    sql: `
      CREATE TABLE queue_jobs (
        id bigserial PRIMARY KEY,
        state text NOT NULL DEFAULT 'queued'
          CHECK (state IN ('queued', 'claimed', 'running', 'succeeded', 'failed', 'cancelled')),
        labels jsonb NOT NULL,
        command text[] NOT NULL,
        image_path text,
        image_sha256 text,
        timeout_ms integer NOT NULL,
        priority integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        submitted_by text,
        submitted_at timestamptz NOT NULL DEFAULT now(),
        worker text,
        agent text,
        dut text,
        lease_id text,
        agent_job_id text,
        claimed_at timestamptz,
        started_at timestamptz,
        heartbeat_at timestamptz,
        finished_at timestamptz,
        cancel_requested boolean NOT NULL DEFAULT false,
        exit_code integer,
        error text
      );
      -- Room for heartbeats to update rows in place (HOT): no index covers heartbeat_at.
      ALTER TABLE queue_jobs SET (fillfactor = 80);
      -- The claim walks this in order and stops at the first row whose labels fit.
      CREATE INDEX queue_jobs_claim ON queue_jobs (priority DESC, id) WHERE state = 'queued';
      -- Expiry looks only at unfinished jobs, however long the history grows.
      CREATE INDEX queue_jobs_active ON queue_jobs (id) WHERE state IN ('claimed', 'running');

      -- One row per ended attempt; the current one lives in its queue_jobs row.
      CREATE TABLE queue_attempts (
        job_id bigint NOT NULL REFERENCES queue_jobs (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        worker text NOT NULL,
        agent text NOT NULL,
        dut text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'lost')),
        reason text,
        PRIMARY KEY (job_id, attempt)
      );

      CREATE TABLE queue_logs (
        seq bigserial PRIMARY KEY,
        job_id bigint NOT NULL REFERENCES queue_jobs (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        data bytea NOT NULL
      );
      CREATE INDEX queue_logs_job ON queue_logs (job_id, seq);

      CREATE TABLE queue_duts (
        agent text NOT NULL,
        name text NOT NULL,
        worker text NOT NULL,
        labels jsonb NOT NULL,
        health text NOT NULL CHECK (health IN ('good', 'bad', 'maintenance')),
        leased boolean NOT NULL,
        seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (agent, name)
      );
    `,
  },
  {
    version: 2,
    name: 'run reports per attempt',
    sql: `
      -- The HTML run report of each attempt (timeline and serial log), written by its worker.
      CREATE TABLE queue_reports (
        job_id bigint NOT NULL REFERENCES queue_jobs (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        html text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (job_id, attempt)
      );
    `,
  },
  {
    version: 3,
    name: 'verdicts, job environment, DUTs to avoid, test cases',
    sql: `
      -- The submitter's environment for the job (values shown only to the submitter).
      ALTER TABLE queue_jobs ADD COLUMN env jsonb NOT NULL DEFAULT '{}'::jsonb;
      -- How the job ended: pass, fail, infra-error, timeout or cancelled, why, and the step.
      ALTER TABLE queue_jobs ADD COLUMN verdict text
        CHECK (verdict IN ('pass', 'fail', 'infra-error', 'timeout', 'cancelled'));
      ALTER TABLE queue_jobs ADD COLUMN verdict_reason text;
      ALTER TABLE queue_jobs ADD COLUMN failed_step text;
      -- DUTs ([{agent, dut}]) where an attempt ended in an infra-error: a retry prefers others.
      ALTER TABLE queue_jobs ADD COLUMN avoid jsonb NOT NULL DEFAULT '[]'::jsonb;

      ALTER TABLE queue_attempts ADD COLUMN verdict text
        CHECK (verdict IN ('pass', 'fail', 'infra-error', 'timeout', 'cancelled'));
      ALTER TABLE queue_attempts ADD COLUMN step text;
      ALTER TABLE queue_attempts ADD COLUMN exit_code integer;
      ALTER TABLE queue_attempts ADD COLUMN agent_job_id text;
      -- A DUT's recent verdicts, newest first (three infra-errors in a row send it to its health check).
      CREATE INDEX queue_attempts_dut ON queue_attempts (agent, dut, ended_at DESC);

      -- The test cases an attempt reported (JUnit), in the order its files listed them.
      CREATE TABLE queue_test_cases (
        job_id bigint NOT NULL REFERENCES queue_jobs (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        idx integer NOT NULL,
        suite text NOT NULL,
        name text NOT NULL,
        status text NOT NULL CHECK (status IN ('passed', 'failed', 'error', 'skipped')),
        duration_ms integer NOT NULL,
        message text NOT NULL,
        PRIMARY KEY (job_id, attempt, idx)
      );
    `,
  },
];

/** The schema version this code writes and understands. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

/** Brings the schema up to date; returns the versions before and after. Idempotent. */
export async function migrate(
  db: QueueDb,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<{ from: number; to: number }> {
  const latest = migrations.at(-1)?.version ?? 0;
  let from: number | undefined;
  for (;;) {
    const step = await db.transaction(async (tx) => {
      const current = await lockedVersion(tx);
      from ??= current;
      if (current > latest) {
        throw failedPrecondition(
          `the queue database has schema version ${current}, newer than this jiglet knows (${latest}); ` +
            'upgrade jiglet on this host',
        );
      }
      const next = migrations.find((m) => m.version > current);
      if (!next) return current;
      await tx.exec(next.sql);
      await tx.query(
        'INSERT INTO jiglet_schema_migrations (version, name, applied_at) VALUES ($1, $2, now())',
        [next.version, next.name],
      );
      return undefined;
    });
    if (step !== undefined) return { from: from ?? step, to: step };
  }
}

/** Takes the migration lock for this transaction and reads the applied version (0 for none). */
async function lockedVersion(tx: Queryable): Promise<number> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
  // Under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type.
  await tx.exec(
    `CREATE TABLE IF NOT EXISTS jiglet_schema_migrations (
       version integer PRIMARY KEY,
       name text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now()
     )`,
  );
  const [row] = await tx.query<{ version: number }>(
    'SELECT coalesce(max(version), 0)::integer AS version FROM jiglet_schema_migrations',
  );
  return row!.version;
}
