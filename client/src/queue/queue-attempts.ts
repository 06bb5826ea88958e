/**
 * The history of a queue job's attempts: every attempt with how it ended, and how many in a row
 * a DUT lost to infra-errors (what decides when it gets a health check).
 */
import type { Queryable } from './queue-db.js';
import type { FinalState, QueueAttempt, RunStep, Verdict } from './queue-job.js';
import { jobById } from './queue-rows.js';

/** Every attempt at a job, oldest first; the current one (from the job row) has no end yet. */
export async function attempts(db: Queryable, id: string): Promise<QueueAttempt[]> {
  await jobById(db, id);
  const rows = await db.query<{
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

/**
 * How many of the DUT's latest attempts in a row ended in an infra-error it could be blamed
 * for (a lost or stopped worker is not the DUT's fault and neither counts nor breaks the run).
 */
export async function infraErrorStreak(db: Queryable, agent: string, dut: string): Promise<number> {
  const rows = await db.query<{ verdict: Verdict | null; step: RunStep | null }>(
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
