/**
 * `jigctl queue …`: the fleet queue straight from its database (`--db URL` or $JIGLET_QUEUE_DB),
 * for CI pipelines that submit jig jobs and people who watch them. No agent connection is needed.
 * How the queue is opened is queue-cli-store.ts; following a job to its verdict queue-follow.ts;
 * `queue status` queue-status-command.ts.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { renderJunit, testCaseSummary } from '../../../protocol/src/test-cases.js';
import { labelText } from '../queue/queue-insight.js';
import { type JobSpec, type QueueJob, validateSpec } from '../queue/queue-store.js';
import { writeReport } from '../report/write-report.js';
import { renderTable } from './format.js';
import { parseDuration, parseEnv, parsePairs } from './parse-units.js';
import { jobJson, me, out, type QueueFlags, withStore } from './queue-cli-store.js';
import { cancelOnSignal, exitCodeOf, follow, verdictLine } from './queue-follow.js';
import type {
  QueueAttemptFlags,
  QueueJobFlags,
  QueueListFlags,
  SubmitFlags,
} from './register/queue-commands.js';

export type { QueueFlags } from './queue-cli-store.js';
export { exitCodeOf, queueLogsCommand, VERDICT_EXIT } from './queue-follow.js';
export { queueStatusCommand } from './queue-status-command.js';

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `jigctl queue submit --labels … [--image FILE] -- CMD ARGS`: prints the job id. */
export async function queueSubmitCommand(flags: SubmitFlags, command: readonly string[]): Promise<number> {
  if (command.length === 0) throw invalidArgument('name the command to run after --, e.g. -- ./run-tests.sh');
  if (!flags.labels) throw invalidArgument('--labels is required: which DUTs may run the job (k=v,…)');
  const labels = parsePairs('--labels', flags.labels.split(','), 'key=value');
  // The worker reads the image from this path: it must be reachable from the jig hosts.
  const image = flags.image
    ? { path: resolve(flags.image), sha256: await sha256Of(resolve(flags.image)) }
    : undefined;
  const spec: JobSpec = {
    labels,
    command: [...command],
    image,
    timeoutMs: parseDuration('--timeout', flags.timeout ?? '1h'),
    priority: flags.priority,
    maxAttempts: flags.maxAttempts,
    submittedBy: me(),
    env: parseEnv(flags.env ?? []),
  };
  validateSpec(spec);
  return withStore(flags, async (store) => {
    // Refused before anything is queued: a job no registered DUT could run would wait forever.
    const { warning } = await store.checkRunnable(labels);
    if (warning) process.stderr.write(`jigctl: warning: ${warning}\n`);
    const job = await store.submit(spec);
    if (flags.idFile) await writeFile(flags.idFile, `${job.id}\n`);
    if (!flags.wait) {
      await out(flags.output === 'json' ? `${JSON.stringify(jobJson(job), null, 2)}\n` : `${job.id}\n`);
      return 0;
    }
    // stdout carries the job's output, so the id goes to stderr (and is in every line the worker notes).
    process.stderr.write(`jigctl: queued job ${job.id}; following its output (Ctrl-C cancels it)\n`);
    const done = await cancelOnSignal(store, job.id, () => follow(store, job.id));
    process.stderr.write(`jigctl: ${verdictLine(done)}\n`);
    return exitCodeOf(done);
  });
}

/** `jigctl queue list`. */
export async function queueListCommand(flags: QueueListFlags): Promise<number> {
  const jobs = await withStore(flags, (store) =>
    store.list({ states: flags.state as QueueJob['state'][] | undefined, limit: flags.limit }),
  );
  if (flags.output === 'json') {
    await out(`${JSON.stringify(jobs.map(jobJson), null, 2)}\n`);
    return 0;
  }
  const rows = jobs.map((j) => [
    j.id,
    j.state,
    j.verdict ?? '-',
    labelText(j.labels),
    j.dut ?? '-',
    `${j.attempts}/${j.maxAttempts}`,
    j.submittedAt.toISOString(),
    j.command.join(' ').slice(0, 40),
  ]);
  if (rows.length === 0) {
    await out(
      flags.state?.length ? `no jobs ${flags.state.join(' or ')}\n` : 'queue empty: no jobs submitted\n',
    );
    return 0;
  }
  await out(
    `${renderTable(['ID', 'STATE', 'VERDICT', 'LABELS', 'DUT', 'TRIES', 'SUBMITTED', 'COMMAND'], rows)}\n`,
  );
  return 0;
}

/** `jigctl queue cancel ID`. */
export async function queueCancelCommand(flags: QueueJobFlags): Promise<number> {
  const job = await withStore(flags, (store) => store.cancel(flags.id));
  await out(
    job.state === 'cancelled'
      ? `job ${job.id} cancelled\n`
      : `job ${job.id} is ${job.state} on ${job.dut}: its worker stops it at its next heartbeat\n`,
  );
  return 0;
}

/**
 * `jigctl queue results ID [--attempt N] [-o table|json|junit]`: the test cases an attempt
 * reported (default: the latest attempt); junit is for a CI system to read.
 */
export async function queueResultsCommand(flags: QueueAttemptFlags): Promise<number> {
  const format = flags.output ?? 'table';
  if (!['table', 'text', 'json', 'junit'].includes(format)) {
    throw invalidArgument(`-o is table, json or junit, not "${format}"`);
  }
  const results = await withStore(flags, (store) => store.testCases(flags.id, flags.attempt));
  if (format === 'junit') {
    await out(`${renderJunit(results.cases, `queue job ${flags.id} attempt ${results.attempt}`)}`);
    return 0;
  }
  if (format === 'json') {
    await out(
      `${JSON.stringify({ job: flags.id, attempt: results.attempt, cases: results.cases }, null, 2)}\n`,
    );
    return 0;
  }
  if (results.attempt === 0) {
    await out(`job ${flags.id} has not run yet, so it has no test cases\n`);
    return 0;
  }
  if (results.cases.length === 0) {
    await out(
      `job ${flags.id} attempt ${results.attempt}: no test cases reported (a job reports them as JUnit XML in $JIGLET_RESULTS/)\n`,
    );
    return 0;
  }
  const rows = results.cases.map((c) => [
    c.suite,
    c.name,
    c.status,
    `${(c.durationMs / 1000).toFixed(3)}s`,
    c.message.replace(/\s*\n\s*/g, ' ').slice(0, 80),
  ]);
  await out(
    `${renderTable(['SUITE', 'NAME', 'STATUS', 'TIME', 'MESSAGE'], rows)}\njob ${flags.id} attempt ${results.attempt}: ${testCaseSummary(results.cases)}\n`,
  );
  return 0;
}

/**
 * `jigctl queue report ID [--attempt N] [-o FILE]`: the run report its worker stored (the latest
 * attempt's unless one is named), to `queue-ID.html`, a file, or stdout with `-o -`.
 */
export async function queueReportCommand(flags: QueueAttemptFlags): Promise<number> {
  const report = await withStore(flags, (store) => store.getReport(flags.id, flags.attempt));
  await writeReport(report.html, flags.output ?? `queue-${flags.id}-attempt-${report.attempt}.html`);
  return 0;
}

/** `jigctl queue stats`: depth per label set, and the DUTs that could serve each. */
export async function queueStatsCommand(flags: QueueFlags): Promise<number> {
  const stats = await withStore(flags, (store) => store.stats());
  if (flags.output === 'json') {
    await out(`${JSON.stringify(stats, null, 2)}\n`);
    return 0;
  }
  const rows = stats.labelSets.map((s) => [
    labelText(s.labels),
    String(s.queued),
    String(s.running),
    String(s.duts.idle),
    String(s.duts.busy),
    String(s.duts.quarantined),
    String(s.duts.offline),
  ]);
  const t = stats.totals;
  const active = t.queued + t.claimed + t.running;
  const summary =
    `${active === 0 ? 'queue empty: ' : ''}${t.queued} ${t.queued === 1 ? 'job' : 'jobs'} queued, ` +
    `${t.claimed + t.running} running; finished: ${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled`;
  if (rows.length === 0) {
    await out(`${summary}\n`);
    return 0;
  }
  await out(
    `${renderTable(['LABELS', 'QUEUED', 'RUNNING', 'IDLE', 'BUSY', 'QUARANTINED', 'OFFLINE'], rows)}\n${summary}\n`,
  );
  return 0;
}
