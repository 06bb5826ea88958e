/**
 * `jigctl report (--lease L | --job ID) [-o FILE] [--verdict V --reason R]`: the run record of a lease or a job as one
 * self-contained HTML file (timeline, serial log, events) that opens offline.
 */
import type { Job } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { type GetTimelineResponse, JobRole } from '../../../protocol/gen/jiglet/v1/records.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { resolveConnection } from '../connection.js';
import type { JigletClient } from '../jiglet-client.js';
import { testCasesOf } from '../job-test-cases.js';
import { renderReport } from '../report/render-report.js';
import type { TestCaseRun } from '../report/report-model.js';
import { writeReport } from '../report/write-report.js';
import { connect } from './job-commands.js';
import type { ReportFlags } from './register/report-command.js';

/** Command jobs whose test cases a report asks for, at most (one GetJob each). */
const MAX_CASE_JOBS = 50;

/** The test cases of the timeline's command jobs, each laid out from its own job's start. */
async function caseRuns(client: JigletClient, timeline: GetTimelineResponse): Promise<TestCaseRun[]> {
  const commands = timeline.jobs.filter((j) => j.role === JobRole.JOB_ROLE_COMMAND).slice(0, MAX_CASE_JOBS);
  const runs: TestCaseRun[] = [];
  for (const j of commands) {
    let job: Job;
    try {
      job = await client.get(j.jobId);
    } catch {
      // Pruned since the timeline was read: its cases went with it; the report stays useful.
      continue;
    }
    const cases = testCasesOf(job);
    const from = (j.started ?? j.created)?.getTime();
    if (cases.length > 0 && from !== undefined) runs.push({ from, cases });
  }
  return runs;
}

/** `jigctl report`. */
export async function reportCommand(flags: ReportFlags): Promise<number> {
  const leaseId = flags.lease;
  const jobId = flags.job;
  if (!leaseId === !jobId) throw invalidArgument('name what to report on: --lease ID or --job ID');
  if (flags.reason !== undefined && !flags.verdict) throw invalidArgument('--reason needs --verdict');
  const id = (leaseId ?? jobId)!;
  const client = connect(flags);
  try {
    const timeline = await client.records.timeline(leaseId ? { leaseId } : { jobId: jobId! }, {
      includeSerial: flags.serial ?? true,
    });
    const html = renderReport(timeline, {
      agent: resolveConnection(flags).server,
      testCaseRuns: await caseRuns(client, timeline),
      verdict: flags.verdict && { verdict: flags.verdict, reason: flags.reason },
    });
    // The id names the default file; whatever was typed, it stays a name in this folder.
    await writeReport(html, flags.output ?? `run-${id.replace(/[^\w.-]/g, '_')}.html`);
    return 0;
  } finally {
    client.close();
  }
}
