/**
 * `jigctl queue …`: the fleet queue straight from its database (`--db URL` or $JIGLET_QUEUE_DB),
 * for CI pipelines that submit jig jobs and people who watch them. No agent connection is needed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { networkErrorText } from '../diagnose-connection.js';
import { isConnectionError } from '../queue/connection-errors.js';
import { LOG_CHANNEL, type QueueJob, QueueStore } from '../queue/queue-store.js';
import { writeReport } from '../report/write-report.js';
import { renderTable } from './format.js';
import { parseDuration, parsePairs } from './parse-units.js';
import { writeOut } from './write-out.js';

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

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function jobJson(job: QueueJob): Record<string, unknown> {
  return JSON.parse(JSON.stringify(job)) as Record<string, unknown>;
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
  const job = await withStore(flags, (store) =>
    store.submit({
      labels,
      command: [...command],
      image,
      timeoutMs: parseDuration('--timeout', flags.timeout ?? '1h'),
      priority: flags.priority,
      maxAttempts: flags.maxAttempts,
      submittedBy: process.env.USER ?? process.env.LOGNAME,
    }),
  );
  await out(flags.output === 'json' ? `${JSON.stringify(jobJson(job), null, 2)}\n` : `${job.id}\n`);
  return 0;
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
  await out(`${renderTable(['ID', 'STATE', 'LABELS', 'DUT', 'TRIES', 'SUBMITTED', 'COMMAND'], rows)}\n`);
  return 0;
}

/** `jigctl queue status ID`: the job, where it ran and where its logs are, and each attempt. */
export async function queueStatusCommand(flags: QueueFlags & { id: string }): Promise<number> {
  const [job, attempts] = await withStore(flags, async (store) => [
    await store.get(flags.id),
    await store.attempts(flags.id),
  ]);
  if (flags.output === 'json') {
    await out(`${JSON.stringify({ ...jobJson(job), history: attempts }, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `job ${job.id}: ${job.state}${job.cancelRequested && job.state !== 'cancelled' ? ' (cancel requested)' : ''}`,
    `labels:    ${labelText(job.labels)}`,
    `command:   ${job.command.join(' ')}`,
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
    ...attempts.map(
      (a) =>
        `attempt ${a.attempt}: ${a.dut} (worker ${a.worker}) ${a.startedAt.toISOString()} → ${a.outcome ?? 'running'}${a.reason ? `: ${a.reason}` : ''}`,
    ),
  ];
  await out(`${lines.join('\n')}\n`);
  return 0;
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
    let after: string | undefined;
    const drain = async (): Promise<void> => {
      for (;;) {
        const chunks = await store.readLog(flags.id, { afterSeq: after, limit: 256 });
        if (chunks.length === 0) return;
        for (const chunk of chunks) await out(chunk.data);
        after = chunks.at(-1)!.seq;
      }
    };
    let job = await store.get(flags.id);
    if (!flags.follow) {
      await drain();
      return 0;
    }
    let wake: () => void = () => undefined;
    const unlisten = await store.db.listen(LOG_CHANNEL, (payload) => {
      if (payload === flags.id) wake();
    });
    try {
      for (;;) {
        await drain();
        if (FINAL.has(job.state)) {
          await drain();
          return job.state === 'succeeded' ? 0 : (job.exitCode ?? 1) || 1;
        }
        await new Promise<void>((done) => {
          const timer = setTimeout(done, 1000);
          wake = () => {
            clearTimeout(timer);
            done();
          };
        });
        job = await store.get(flags.id);
      }
    } finally {
      await unlisten?.();
    }
  });
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
