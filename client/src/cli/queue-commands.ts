/**
 * `jigctl queue …`: the fleet queue straight from its database (`--db URL` or $JIGLET_QUEUE_DB),
 * for CI pipelines that submit jig jobs and people who watch them. No agent connection is needed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { renderJunit, testCaseSummary } from '../../../protocol/src/test-cases.js';
import { networkErrorText } from '../diagnose-connection.js';
import { isConnectionError } from '../queue/connection-errors.js';
import { labelText } from '../queue/queue-insight.js';
import {
  type JobSpec,
  LOG_CHANNEL,
  type QueueAttempt,
  type QueueJob,
  type QueuePlace,
  QueueStore,
  type Verdict,
  validateSpec,
} from '../queue/queue-store.js';
import { writeReport } from '../report/write-report.js';
import { renderTable } from './format.js';
import { parseDuration, parseEnv, parsePairs } from './parse-units.js';
import { writeOut } from './write-out.js';

/**
 * What `queue submit --wait` and `queue logs -f` exit with when the job's command did not decide
 * it: a pass is 0 and a fail is the command's own code (1 if it had none), as with `jigctl run`.
 */
export const VERDICT_EXIT: Readonly<Record<Exclude<Verdict, 'pass' | 'fail'>, number>> = {
  /** sysexits EX_TEMPFAIL: the lab failed, not the test; trying again later may pass. */
  'infra-error': 75,
  /** As GNU timeout(1). */
  timeout: 124,
  /** As a shell reports a command ended by Ctrl-C. */
  cancelled: 130,
};

/** The exit code a finished job stands for. */
export function exitCodeOf(job: QueueJob): number {
  const verdict =
    job.verdict ?? (job.state === 'succeeded' ? 'pass' : job.state === 'cancelled' ? 'cancelled' : 'fail');
  if (verdict === 'pass') return 0;
  if (verdict === 'fail') return job.exitCode || 1;
  return VERDICT_EXIT[verdict];
}

/** Who is asking: the name `queue submit` records as the submitter. */
function me(): string | undefined {
  return process.env.USER ?? process.env.LOGNAME;
}

function out(data: string | Buffer): Promise<void> {
  return writeOut(process.stdout, typeof data === 'string' ? Buffer.from(data) : data);
}

/** Flags every queue command takes. */
export interface QueueFlags {
  db?: string;
  output?: string;
}

export interface SubmitFlags extends QueueFlags {
  labels?: string;
  image?: string;
  priority?: number;
  timeout?: string;
  maxAttempts?: number;
  env?: string[];
  wait?: boolean;
  /** Write the job id here once it is queued (for a CI script that also --waits). */
  idFile?: string;
}

function dbUrl(flags: QueueFlags): string {
  const url = flags.db ?? process.env.JIGLET_QUEUE_DB;
  if (!url) {
    throw invalidArgument(
      'name the queue database: --db postgres://… (or pglite:DIR for the embedded one), or set JIGLET_QUEUE_DB',
    );
  }
  return url;
}

async function withStore<T>(flags: QueueFlags, fn: (store: QueueStore) => Promise<T>): Promise<T> {
  const url = dbUrl(flags);
  try {
    const store = await QueueStore.open(url);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } catch (err) {
    throw unreachableDb(url, err);
  }
}

/**
 * A database that cannot be reached, in one sentence: where, why in words, what to check
 * (pg reports "connect ECONNREFUSED 127.0.0.1:1" and nothing else).
 */
function unreachableDb(url: string, err: unknown): unknown {
  if (err instanceof JigletError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (!isConnectionError(err) && !networkErrorText(code)) return err;
  const host = /^postgres(ql)?:/.test(url) ? new URL(url).host : url;
  const why = networkErrorText(code) ?? (err as Error).message;
  return new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `cannot reach the queue database at ${host}: ${why}; check --db (or JIGLET_QUEUE_DB) and that PostgreSQL runs there`,
    { cause: err },
  );
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The job's environment as the asker may see it: values only for its submitter, as the agent does. */
function visibleEnv(job: QueueJob): Record<string, string> {
  if (job.submittedBy !== undefined && job.submittedBy === me()) return job.env;
  return Object.fromEntries(Object.keys(job.env).map((k) => [k, '(redacted)']));
}

function jobJson(job: QueueJob): Record<string, unknown> {
  return JSON.parse(JSON.stringify({ ...job, env: visibleEnv(job) })) as Record<string, unknown>;
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

/**
 * While `fn` follows a job, a SIGINT, SIGTERM or SIGHUP (Ctrl-C, a cancelled CI pipeline)
 * cancels the job, as `jigctl run` stops its remote job: a waiting client that goes away must not
 * leave its DUT busy (labgrid's locks outlive cancelled CI jobs, #1739). A second signal leaves
 * at once and the job goes on.
 */
async function cancelOnSignal<T>(store: QueueStore, id: string, fn: () => Promise<T>): Promise<T> {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  let asked = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (asked) process.exit(128 + (constants.signals[sig] ?? 2));
    asked = true;
    process.stderr.write(`jigctl: cancelling job ${id} (again to leave it running)\n`);
    store.cancel(id).catch((err: Error) => process.stderr.write(`jigctl: cancel failed: ${err.message}\n`));
  };
  for (const s of signals) process.on(s, onSignal);
  try {
    return await fn();
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}

/** "job 42: infra-error at flash: flashing the image failed: …" */
function verdictLine(job: QueueJob): string {
  const verdict = job.verdict ?? job.state;
  const where = job.failedStep && verdict !== 'pass' ? ` at ${job.failedStep}` : '';
  const why = job.verdictReason ?? job.error;
  return `job ${job.id}: ${verdict}${where}${why ? `: ${why}` : ''}`;
}

/** `jigctl queue list`. */
export async function queueListCommand(
  flags: QueueFlags & { state?: string[]; limit?: number },
): Promise<number> {
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

/** `jigctl queue status ID`: the job, where it ran and where its logs are, and each attempt. */
export async function queueStatusCommand(flags: QueueFlags & { id: string }): Promise<number> {
  const [job, attempts, place] = await withStore(flags, async (store) => {
    const found = await store.get(flags.id);
    return [
      found,
      await store.attempts(flags.id),
      found.state === 'queued' ? await store.place(flags.id) : undefined,
    ] as const;
  });
  if (flags.output === 'json') {
    await out(
      `${JSON.stringify({ ...jobJson(job), history: attempts, ...(place ? { queue: place } : {}) }, null, 2)}\n`,
    );
    return 0;
  }
  const env = Object.entries(visibleEnv(job));
  const lines = [
    `job ${job.id}: ${job.state}${job.cancelRequested && job.state !== 'cancelled' ? ' (cancel requested)' : ''}`,
    ...(job.verdict
      ? [
          `verdict:   ${job.verdict}${job.failedStep && job.verdict !== 'pass' ? ` at ${job.failedStep}` : ''}${job.verdictReason ? `: ${job.verdictReason}` : ''}`,
        ]
      : []),
    ...(place ? placeLines(job, place) : []),
    ...(job.state === 'queued' && job.avoid.length > 0
      ? [
          `retry:     prefers DUTs other than ${job.avoid.map((a) => a.dut).join(', ')} (an infra-error there)`,
        ]
      : []),
    `labels:    ${labelText(job.labels)}`,
    `command:   ${job.command.join(' ')}`,
    ...(env.length > 0 ? [`env:       ${env.map(([k, v]) => `${k}=${v}`).join(' ')}`] : []),
    ...(job.image ? [`image:     ${job.image.path} (sha256 ${job.image.sha256})`] : []),
    `priority:  ${job.priority}, timeout ${job.timeoutMs} ms, attempts ${job.attempts} of ${job.maxAttempts}`,
    `submitted: ${job.submittedAt.toISOString()}${job.submittedBy ? ` by ${job.submittedBy}` : ''}`,
    ...(job.dut ? [`ran on:    ${job.dut} at ${job.agent} (worker ${job.worker})`] : []),
    ...(job.agentJobId
      ? [`logs:      jigctl queue logs ${job.id}; agent job ${job.agentJobId} on ${job.agent}`]
      : []),
    ...(job.finishedAt ? [`finished:  ${job.finishedAt.toISOString()}`] : []),
    ...(job.exitCode !== undefined ? [`exit code: ${job.exitCode}`] : []),
    ...(job.error ? [`error:     ${job.error}`] : []),
    ...attempts.map(attemptLine),
  ];
  await out(`${lines.join('\n')}\n`);
  return 0;
}

/** "attempt 2: vdut-b (worker w1) 2026-… → infra-error at flash: …" */
function attemptLine(a: QueueAttempt): string {
  const end = a.verdict ?? (a.outcome === undefined ? 'running' : a.outcome);
  const where = a.step && a.verdict !== 'pass' ? ` at ${a.step}` : '';
  const code = a.exitCode !== undefined && a.verdict !== 'pass' ? ` (exit ${a.exitCode})` : '';
  return `attempt ${a.attempt}: ${a.dut} (worker ${a.worker}) ${a.startedAt.toISOString()} → ${end}${where}${code}${a.reason ? `: ${a.reason}` : ''}`;
}

/** 95_000 → "2m", 4_000 → "4s", 5_400_000 → "1h 30m": an estimate, not a measurement. */
function roughly(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  return `${Math.floor(m / 60)}h${m % 60 ? ` ${m % 60}m` : ''}`;
}

/** What a queued job waits for: its place in line, the DUTs that could run it, and when it may start. */
function placeLines(job: QueueJob, place: QueuePlace): string[] {
  const others = place.queuedWithSameLabels - 1;
  const position = `position:  ${place.position} of ${place.queuedWithSameLabels} queued ${place.queuedWithSameLabels === 1 ? 'job' : 'jobs'} for ${labelText(job.labels)}${others === 0 ? ' (next in line)' : ''}`;
  const duts =
    place.duts.length === 0
      ? 'DUTs:      no registered DUT has these labels'
      : `DUTs:      ${place.duts.length} ${place.duts.length === 1 ? 'matches' : 'match'}: ${place.duts
          .map((d) => `${d.name} ${d.activity === 'running' ? `running job ${d.job}` : d.activity}`)
          .join(', ')}`;
  const e = place.estimate;
  const estimate = e
    ? `estimate:  ${e.startInMs === 0 ? 'starts as soon as a worker picks it up' : `starts in about ${roughly(e.startInMs)}`} (typical run ${roughly(e.typicalRunMs)}, from the last ${e.fromRuns} ${e.fromRuns === 1 ? 'run' : 'runs'} with these labels)`
    : `estimate:  ${place.noEstimate ?? 'no estimate yet'}`;
  return [position, duts, estimate];
}

/** `jigctl queue cancel ID`. */
export async function queueCancelCommand(flags: QueueFlags & { id: string }): Promise<number> {
  const job = await withStore(flags, (store) => store.cancel(flags.id));
  await out(
    job.state === 'cancelled'
      ? `job ${job.id} cancelled\n`
      : `job ${job.id} is ${job.state} on ${job.dut}: its worker stops it at its next heartbeat\n`,
  );
  return 0;
}

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * `jigctl queue logs ID [-f]`. With -f it follows until the job is over and exits with the job's
 * exit code (1 when it failed without one), so a CI step can be `submit` then `logs -f`.
 * Real PostgreSQL wakes it with a notification; the embedded queue (no long connections through
 * its socket) is looked at again every second.
 */
export async function queueLogsCommand(
  flags: QueueFlags & { id: string; follow?: boolean },
): Promise<number> {
  return withStore(flags, async (store) => {
    if (!flags.follow) {
      await store.get(flags.id);
      await drainLog(store, flags.id, undefined);
      return 0;
    }
    return exitCodeOf(await follow(store, flags.id));
  });
}

/** Prints the job's output after `after`; resolves with the last seq printed. */
async function drainLog(
  store: QueueStore,
  id: string,
  after: string | undefined,
): Promise<string | undefined> {
  for (;;) {
    const chunks = await store.readLog(id, { afterSeq: after, limit: 256 });
    if (chunks.length === 0) return after;
    for (const chunk of chunks) await out(chunk.data);
    after = chunks.at(-1)!.seq;
  }
}

/** Prints the job's output as it arrives until the job is over; resolves with the finished job. */
async function follow(store: QueueStore, id: string): Promise<QueueJob> {
  let after: string | undefined;
  let job = await store.get(id);
  let wake: () => void = () => undefined;
  const unlisten = await store.db.listen(LOG_CHANNEL, (payload) => {
    if (payload === id) wake();
  });
  try {
    for (;;) {
      after = await drainLog(store, id, after);
      if (FINAL.has(job.state)) {
        await drainLog(store, id, after);
        return job;
      }
      await new Promise<void>((done) => {
        const timer = setTimeout(done, 1000);
        wake = () => {
          clearTimeout(timer);
          done();
        };
      });
      job = await store.get(id);
    }
  } finally {
    await unlisten?.();
  }
}

/**
 * `jigctl queue results ID [--attempt N] [-o table|json|junit]`: the test cases an attempt
 * reported (default: the latest attempt); junit is for a CI system to read.
 */
export async function queueResultsCommand(
  flags: QueueFlags & { id: string; attempt?: number },
): Promise<number> {
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
export async function queueReportCommand(
  flags: QueueFlags & { id: string; attempt?: number },
): Promise<number> {
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
