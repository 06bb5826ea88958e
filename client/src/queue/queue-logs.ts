/**
 * A queue job's output log: chunks appended per attempt, read back in order from any position,
 * with a notification so followers wake up instead of polling.
 */
import { invalidArgument, notFound } from '../../../protocol/src/errors.js';
import type { Queryable } from './queue-db.js';
import {
  checkId,
  checkLimit,
  DEFAULT_LOG_LIMIT,
  LOG_CHANNEL,
  type LogChunk,
  MAX_LOG_LIMIT,
} from './queue-job.js';
import { asBuffer } from './queue-rows.js';

/** Appends output of one attempt and wakes up anyone following the job's log. */
export async function appendLog(db: Queryable, id: string, attempt: number, data: Buffer): Promise<string> {
  try {
    const [row] = await db.query<{ seq: string }>(
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
export async function readLog(
  db: Queryable,
  id: string,
  opts: { afterSeq?: string; limit?: number } = {},
): Promise<LogChunk[]> {
  const after = opts.afterSeq ?? '0';
  if (!/^\d{1,19}$/.test(after)) throw invalidArgument(`log position "${after}" is not a number`);
  const rows = await db.query<{ seq: string; attempt: number; data: Uint8Array }>(
    `SELECT seq::text AS seq, attempt, data FROM queue_logs WHERE job_id = $1 AND seq > $2
     ORDER BY seq LIMIT $3`,
    [checkId(id), after, checkLimit(opts.limit, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT)],
  );
  return rows.map((r) => ({ seq: r.seq, attempt: r.attempt, data: asBuffer(r.data) }));
}
