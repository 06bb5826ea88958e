/**
 * The test cases each attempt reported (JUnit XML a job wrote to `$JIGLET_RESULTS/`, read by the
 * agent), stored per job and attempt so `jigctl queue results` can hand them to a CI system.
 */
import { invalidArgument, notFound } from '../../../protocol/src/errors.js';
import {
  MAX_MESSAGE_CHARS,
  MAX_TEST_CASES,
  TEST_CASE_STATUSES,
  type TestCase,
  type TestCaseStatus,
} from '../../../protocol/src/test-cases.js';
import type { QueueDb } from './queue-db.js';
import { checkId, MAX_TEXT } from './queue-job.js';

/** Rows per INSERT: well under PostgreSQL's 65535 parameters. */
const BATCH = 500;

/** An attempt's stored cases. */
export interface AttemptResults {
  attempt: number;
  cases: TestCase[];
}

/**
 * Stores an attempt's cases, replacing any stored for it before; at most MAX_TEST_CASES (the
 * rest are counted, not kept). Resolves with how many were dropped.
 */
export async function saveTestCases(
  db: QueueDb,
  id: string,
  attempt: number,
  cases: readonly TestCase[],
): Promise<number> {
  checkId(id);
  if (!Number.isInteger(attempt) || attempt < 1)
    throw invalidArgument(`attempt must be 1 or more, not ${attempt}`);
  const kept = cases.slice(0, MAX_TEST_CASES).map(bounded);
  try {
    await db.transaction(async (tx) => {
      await tx.query('DELETE FROM queue_test_cases WHERE job_id = $1 AND attempt = $2', [id, attempt]);
      for (let start = 0; start < kept.length; start += BATCH) {
        const batch = kept.slice(start, start + BATCH);
        await tx.query(
          `INSERT INTO queue_test_cases (job_id, attempt, idx, suite, name, status, duration_ms, message)
           SELECT $1, $2, x.idx, x.suite, x.name, x.status, x.duration_ms, x.message
           FROM jsonb_to_recordset($3::jsonb)
             AS x (idx integer, suite text, name text, status text, duration_ms integer, message text)`,
          [
            id,
            attempt,
            JSON.stringify(
              batch.map((c, i) => ({
                idx: start + i,
                suite: c.suite,
                name: c.name,
                status: c.status,
                duration_ms: c.durationMs,
                message: c.message,
              })),
            ),
          ],
        );
      }
    });
  } catch (err) {
    if ((err as { code?: unknown }).code === '23503') throw notFound(`no queue job ${id}`);
    throw err;
  }
  return cases.length - kept.length;
}

/** The cases of one attempt (default: the latest attempt that ran), in reported order. */
export async function readTestCases(db: QueueDb, id: string, attempt?: number): Promise<AttemptResults> {
  const [job] = await db.query<{ attempts: number }>('SELECT attempts FROM queue_jobs WHERE id = $1', [
    checkId(id),
  ]);
  if (!job) throw notFound(`no queue job ${id}`);
  if (attempt !== undefined && (!Number.isInteger(attempt) || attempt < 1 || attempt > job.attempts)) {
    throw invalidArgument(
      job.attempts === 0
        ? `queue job ${id} has not run yet, so it has no attempt ${attempt}`
        : `queue job ${id} has attempts 1 to ${job.attempts}, not ${attempt}`,
    );
  }
  const which = attempt ?? job.attempts;
  const rows = await db.query<{
    suite: string;
    name: string;
    status: TestCaseStatus;
    duration_ms: number;
    message: string;
  }>(
    `SELECT suite, name, status, duration_ms, message FROM queue_test_cases
     WHERE job_id = $1 AND attempt = $2 ORDER BY idx`,
    [id, which],
  );
  return {
    attempt: which,
    cases: rows.map((r) => ({
      suite: r.suite,
      name: r.name,
      status: r.status,
      durationMs: r.duration_ms,
      message: r.message,
    })),
  };
}

/** A case as stored: known status, whole milliseconds, names and message cut to size. */
function bounded(c: TestCase): TestCase {
  return {
    suite: clip(String(c.suite ?? ''), MAX_TEXT * 4),
    name: clip(String(c.name ?? ''), MAX_TEXT * 4) || '(unnamed)',
    status: TEST_CASE_STATUSES.includes(c.status) ? c.status : 'error',
    durationMs:
      Number.isFinite(c.durationMs) && c.durationMs > 0 ? Math.min(Math.round(c.durationMs), 2 ** 31 - 1) : 0,
    message: clip(String(c.message ?? ''), MAX_MESSAGE_CHARS),
  };
}

function clip(text: string, most: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what PostgreSQL text refuses
  const clean = text.replace(/\u0000/g, '');
  return clean.length > most ? `${clean.slice(0, most - 1)}…` : clean;
}
