/** The run reports (HTML) stored per queue job and attempt. */
import { invalidArgument, notFound } from '../../../protocol/src/errors.js';
import type { Queryable } from './queue-db.js';
import { checkId, MAX_REPORT_BYTES } from './queue-job.js';
import { jobById } from './queue-rows.js';

/** Stores the run report of one attempt (HTML), replacing one stored before for it. */
export async function saveReport(db: Queryable, id: string, attempt: number, html: string): Promise<void> {
  if (!Number.isInteger(attempt) || attempt < 1)
    throw invalidArgument(`attempt must be 1 or more, not ${attempt}`);
  const bytes = Buffer.byteLength(html);
  if (bytes > MAX_REPORT_BYTES)
    throw invalidArgument(`a run report is at most ${MAX_REPORT_BYTES} bytes; this one is ${bytes}`);
  try {
    await db.query(
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
export async function getReport(
  db: Queryable,
  id: string,
  attempt?: number,
): Promise<{ attempt: number; html: string; createdAt: Date }> {
  const [row] = await db.query<{ attempt: number; html: string; created_at: Date }>(
    `SELECT attempt, html, created_at FROM queue_reports
     WHERE job_id = $1 AND ($2::integer IS NULL OR attempt = $2) ORDER BY attempt DESC LIMIT 1`,
    [checkId(id), attempt ?? null],
  );
  if (row) return { attempt: row.attempt, html: row.html, createdAt: row.created_at };
  await jobById(db, id);
  throw notFound(
    `queue job ${id} has no run report${attempt !== undefined ? ` for attempt ${attempt}` : ''} (its worker stores one when an attempt ends)`,
  );
}
