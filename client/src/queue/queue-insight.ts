/**
 * What the queue can tell about a job before it runs: whether any registered DUT could ever run
 * it (asked at submit), and for a queued job its place in line, what the DUTs that could run it
 * are doing, and when it may start, from recent run times of jobs with the same labels.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { QueueDb } from './queue-db.js';
import { type DutActivity, type QueueJob, type QueuePlace, STALE_DUT_MS } from './queue-job.js';

/** Recent finished runs an estimate is made from. */
const ESTIMATE_RUNS = 20;
/** Label sets named in a refusal, at most. */
const OFFERS_SHOWN = 8;

interface DutRow {
  agent: string;
  name: string;
  labels: Record<string, string>;
  health: 'good' | 'bad' | 'maintenance';
  leased: boolean;
  stale: boolean;
  job: string | null;
}

/** k=v,k=v */
export function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/**
 * Whether a job with these labels can run: throws invalidArgument (naming the labels and what the
 * registered DUTs offer) when no registered DUT has them; resolves with a warning when none has
 * been registered yet, or every matching one is out of service.
 */
export async function checkRunnable(
  db: QueueDb,
  labels: Record<string, string>,
): Promise<{ warning?: string }> {
  const duts = await dutRows(db);
  if (duts.length === 0) {
    return {
      warning:
        'no DUT is registered with the queue yet (no queue worker has reported its DUTs), so nothing checked that one has these labels; the job waits until one does',
    };
  }
  const matching = duts.filter((d) => hasLabels(d.labels, labels));
  if (matching.length === 0) {
    const offers = new Map<string, number>();
    for (const d of duts) {
      const text = labelText(d.labels) || '(no labels)';
      offers.set(text, (offers.get(text) ?? 0) + 1);
    }
    const shown = [...offers]
      .slice(0, OFFERS_SHOWN)
      .map(([text, n]) => `${text} (${n} ${n === 1 ? 'DUT' : 'DUTs'})`)
      .join('; ');
    const more = offers.size > OFFERS_SHOWN ? `; and ${offers.size - OFFERS_SHOWN} more label sets` : '';
    throw invalidArgument(
      `no registered DUT has the labels ${labelText(labels)}, so the job could never run; the registered DUTs offer: ${shown}${more}. Check --labels`,
    );
  }
  const inService = matching.filter((d) => d.health === 'good' && !d.stale);
  if (inService.length === 0) {
    const states = matching.map((d) => `${d.name} ${activityOf(d).activity}`).join(', ');
    return {
      warning: `every DUT with the labels ${labelText(labels)} is out of service (${states}); the job waits until one is back`,
    };
  }
  return {};
}

/** A queued job's place in line, the DUTs that could run it, and an estimated start. */
export async function placeOf(db: QueueDb, job: QueueJob): Promise<QueuePlace> {
  const [line] = await db.query<{ position: number; total: number }>(
    `SELECT count(*) FILTER (WHERE priority > $2 OR (priority = $2 AND id <= $3))::integer AS position,
            count(*)::integer AS total
     FROM queue_jobs WHERE state = 'queued' AND labels = $1::jsonb`,
    [JSON.stringify(job.labels), job.priority, job.id],
  );
  const duts: DutActivity[] = (await dutRows(db))
    .filter((d) => hasLabels(d.labels, job.labels))
    .map(activityOf);
  const position = Math.max(1, line!.position);
  const place: QueuePlace = { position, queuedWithSameLabels: Math.max(position, line!.total), duts };
  const usable = duts.filter((d) => ['idle', 'leased', 'running'].includes(d.activity));
  if (usable.length === 0) {
    place.noEstimate = 'no estimate: no DUT that could run it is in service';
    return place;
  }
  const runs = await db.query<{ ms: number }>(
    `SELECT (extract(epoch FROM finished_at - started_at) * 1000)::double precision AS ms
     FROM queue_jobs WHERE labels = $1::jsonb AND state IN ('succeeded', 'failed')
       AND started_at IS NOT NULL AND finished_at IS NOT NULL
     ORDER BY finished_at DESC LIMIT ${ESTIMATE_RUNS}`,
    [JSON.stringify(job.labels)],
  );
  if (runs.length === 0) {
    place.noEstimate = 'no estimate yet: no job with these labels has finished a run';
    return place;
  }
  const typicalRunMs = Math.round(runs.reduce((sum, r) => sum + Number(r.ms), 0) / runs.length);
  const idle = duts.filter((d) => d.activity === 'idle').length;
  // Each usable DUT takes one job per typical run; the jobs ahead fill the idle DUTs first.
  const startInMs = position <= idle ? 0 : Math.ceil((position - idle) / usable.length) * typicalRunMs;
  place.estimate = { startInMs, typicalRunMs, fromRuns: runs.length };
  return place;
}

function hasLabels(have: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => have[k] === v);
}

function activityOf(d: DutRow): DutActivity {
  const base = { agent: d.agent, name: d.name };
  if (d.stale) return { ...base, activity: 'offline' };
  if (d.health !== 'good') return { ...base, activity: d.health };
  if (d.job !== null) return { ...base, activity: 'running', job: d.job };
  return { ...base, activity: d.leased ? 'leased' : 'idle' };
}

async function dutRows(db: QueueDb): Promise<DutRow[]> {
  return db.query<DutRow>(
    `SELECT d.agent, d.name, d.labels, d.health, d.leased,
       d.seen_at < now() - $1::double precision * interval '1 millisecond' AS stale,
       (SELECT j.id::text FROM queue_jobs j WHERE j.agent = d.agent AND j.dut = d.name
          AND j.state IN ('claimed', 'running') ORDER BY j.id LIMIT 1) AS job
     FROM queue_duts d ORDER BY d.agent, d.name`,
    [STALE_DUT_MS],
  );
}
