/**
 * The registry of DUTs the queue's workers report (labels, health, leased), and the queue's
 * depth against that supply per label set.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { Queryable } from './queue-db.js';
import {
  checkLabels,
  checkName,
  type DutReport,
  JOB_STATES,
  type JobState,
  type QueueStats,
  STALE_DUT_MS,
} from './queue-job.js';
import { msAgo } from './queue-rows.js';

/** Replaces what the registry knows about one agent's DUTs (stamped with the database's time). */
export async function reportDuts(
  db: Queryable,
  agent: string,
  worker: string,
  duts: DutReport[],
): Promise<void> {
  checkName('agent', agent);
  checkName('worker', worker);
  for (const d of duts) {
    checkName('DUT name', d.name);
    checkLabels(`labels of DUT ${d.name}`, d.labels, true);
    if (!['good', 'bad', 'maintenance'].includes(d.health)) {
      throw invalidArgument(`health of DUT ${d.name} must be good, bad or maintenance, not "${d.health}"`);
    }
  }
  await db.query(
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
export async function stats(db: Queryable, opts: { staleMs?: number } = {}): Promise<QueueStats> {
  const staleMs = opts.staleMs ?? STALE_DUT_MS;
  const sets = await db.query<{
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
  const byState = await db.query<{ state: JobState; n: number }>(
    'SELECT state, count(*)::integer AS n FROM queue_jobs GROUP BY state',
  );
  const totals = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
  for (const { state, n } of byState) totals[state] = n;
  return {
    labelSets: sets.map(({ labels, queued, running, ...duts }) => ({ labels, queued, running, duts })),
    totals,
  };
}
