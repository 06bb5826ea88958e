/**
 * jigctl's job commands: run, start, stop, status, logs, list. `run` behaves like ssh: it
 * streams the job's stdout/stderr, exits with the job's code (128+N for signal N), and Ctrl-C
 * stops the remote job.
 */
import { constants } from 'node:os';
import { type Job, JobState } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { isFinished, JigletClient, type StartOptions } from '../jiglet-client.js';
import { testCasesOf } from '../job-test-cases.js';
import { endedText, jobJson, listTable, outcome, parseJobState, statusText } from './format.js';
import { parseCpus, parseDuration, parseEnv, parseSize } from './parse-units.js';
import type { ListFlags, LogsFlags, StartFlags, StatusFlags, StopFlags } from './register/job-commands.js';
import { resultsSummary } from './results-summary.js';
import { writeOut } from './write-out.js';

/** The kernel's largest pid_max, and so the largest useful process limit. */
const MAX_PIDS = 4_194_304;

/** Opens a client from global flags, env and config file. */
export function connect(flags: ConnectionFlags): JigletClient {
  const client = new JigletClient(resolveConnection(flags));
  client.lease = flags.lease || process.env.JIGLET_LEASE || undefined;
  return client;
}

/** Turns CLI flags and the command after `--` into StartOptions. */
export function startOptions(flags: StartFlags, argv: readonly string[]): StartOptions {
  const [command = '', ...args] = argv;
  return {
    command,
    args,
    env: parseEnv(flags.env ?? []),
    cwd: flags.cwd,
    dut: flags.dut,
    stdin: flags.stdin ?? false,
    timeoutMs: flags.timeout === undefined ? 0 : parseDuration('--timeout', flags.timeout),
    memoryBytes: flags.memory === undefined ? 0 : parseSize('--memory', flags.memory),
    cpuMillis: flags.cpus === undefined ? 0 : parseCpus('--cpus', flags.cpus),
    pidsMax: flags.pids === undefined ? 0 : parsePids(flags.pids),
  };
}

/** `--pids N`: a whole number the wire (uint32) and the kernel (pid_max ≤ 4194304) can take. */
function parsePids(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PIDS) {
    throw invalidArgument(`--pids must be a whole number from 1 to ${MAX_PIDS} (got ${n})`);
  }
  return n;
}

/** The exit code that mirrors how a job ended (ssh conventions). */
export function exitCodeOf(job: Job): number {
  if (job.state === JobState.JOB_STATE_FAILED) return /not found|no such file/.test(job.error) ? 127 : 126;
  if (job.state === JobState.JOB_STATE_LOST) return 255;
  if (job.signal) {
    const n = constants.signals[job.signal as NodeJS.Signals];
    return 128 + (n ?? 0);
  }
  return job.exitCode ?? 1;
}

/** `jigctl run`: start, stream, propagate the exit code; returns the code to exit with. */
export async function runCommand(flags: StartFlags, argv: readonly string[]): Promise<number> {
  const client = connect(flags);
  const stopSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  let interrupts = 0;
  let jobId: string | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts += 1;
    if (interrupts > 1 || !jobId) process.exit(128 + (constants.signals[sig] ?? 2));
    process.stderr.write(`jigctl: stopping job ${jobId} (again to leave it running)\n`);
    client.stop(jobId).catch((err: Error) => process.stderr.write(`jigctl: stop failed: ${err.message}\n`));
  };
  for (const s of stopSignals) process.on(s, onSignal);
  try {
    const job = await client.start(startOptions(flags, argv));
    jobId = job.id;
    if (isFinished(job)) {
      process.stderr.write(`jigctl: ${outcome(job)}\n`);
      return exitCodeOf(job);
    }
    const feeding = flags.stdin ? feedStdin(client, job.id) : Promise.resolve();
    let final: Job | undefined;
    for await (const ev of client.output(job.id, { follow: true })) {
      if (ev.type === 'chunk')
        await writeOut(ev.stream === 'stderr' ? process.stderr : process.stdout, ev.data);
      else final = ev.job;
    }
    await feeding.catch(() => undefined);
    final ??= await client.get(job.id);
    if (final.oomKilled) process.stderr.write(`jigctl: job ${job.id} was killed: out of memory\n`);
    else if (final.stopReason === 'timeout') process.stderr.write(`jigctl: job ${job.id} timed out\n`);
    process.stderr.write(resultsSummary(testCasesOf(final), final.resultsError));
    return exitCodeOf(final);
  } finally {
    for (const s of stopSignals) process.off(s, onSignal);
    client.close();
  }
}

async function feedStdin(client: JigletClient, id: string): Promise<void> {
  const writer = client.stdin(id);
  for await (const chunk of process.stdin) await writer.write(chunk as Buffer);
  await writer.close();
}

/** `jigctl start`: prints only the job id. */
export async function startCommand(flags: StartFlags, argv: readonly string[]): Promise<number> {
  const client = connect(flags);
  try {
    const job = await client.start(startOptions(flags, argv));
    process.stdout.write(`${job.id}\n`);
    if (job.state === JobState.JOB_STATE_FAILED) {
      process.stderr.write(`jigctl: ${outcome(job)}\n`);
      return exitCodeOf(job);
    }
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl stop ID`. */
export async function stopCommand(flags: StopFlags): Promise<number> {
  const client = connect(flags);
  try {
    const grace = flags.grace === undefined ? 0 : parseDuration('--grace', flags.grace);
    try {
      const job = await client.stop(flags.id, grace);
      process.stdout.write(`job ${job.id} ${endedText(job)}\n`);
    } catch (err) {
      // Like kill(1) of a process that is gone: nothing left to do is not a failure.
      if (!(err instanceof JigletError && err.code === 'JIGLET_E_ILLEGAL_TRANSITION')) throw err;
      const job = await client.get(flags.id);
      if (!isFinished(job)) throw err;
      process.stdout.write(`job ${job.id} already ended (${endedText(job)})\n`);
    }
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl status ID`. */
export async function statusCommand(flags: StatusFlags): Promise<number> {
  const client = connect(flags);
  try {
    const job = await client.get(flags.id);
    process.stdout.write(
      `${flags.output === 'json' ? JSON.stringify(jobJson(job), null, 2) : statusText(job)}\n`,
    );
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl list`: reads the agent's pages until done (or `--limit`), then prints them. */
export async function listCommand(flags: ListFlags): Promise<number> {
  const client = connect(flags);
  try {
    const jobs = await client.list({
      states: (flags.state ?? []).map(parseJobState),
      owner: flags.owner,
      dut: flags.dut,
      limit: flags.limit,
    });
    process.stdout.write(
      `${flags.output === 'json' ? JSON.stringify(jobs.map(jobJson), null, 2) : jobs.length === 0 ? 'no jobs' : listTable(jobs)}\n`,
    );
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl logs ID [-f] [--offset N]`: raw bytes; stderr chunks go to our stderr. */
export async function logsCommand(flags: LogsFlags): Promise<number> {
  const client = connect(flags);
  const controller = new AbortController();
  const onInt = (): void => controller.abort();
  process.once('SIGINT', onInt);
  try {
    for await (const ev of client.output(flags.id, {
      offset: flags.offset ?? 0,
      follow: flags.follow ?? false,
      signal: controller.signal,
    })) {
      if (ev.type === 'chunk')
        await writeOut(ev.stream === 'stderr' ? process.stderr : process.stdout, ev.data);
    }
    return controller.signal.aborted ? 130 : 0;
  } finally {
    process.off('SIGINT', onInt);
    client.close();
  }
}
