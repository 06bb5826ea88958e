/**
 * Following a queue job to its end from the command line: its output as it arrives, Ctrl-C as a
 * cancel, and the exit code its verdict stands for (`queue submit --wait`, `queue logs -f`).
 */
import { constants } from 'node:os';
import { LOG_CHANNEL, type QueueJob, type QueueStore, type Verdict } from '../queue/queue-store.js';
import { out, withStore } from './queue-cli-store.js';
import type { QueueLogsFlags } from './register/queue-commands.js';

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

/**
 * While `fn` follows a job, a SIGINT, SIGTERM or SIGHUP (Ctrl-C, a cancelled CI pipeline)
 * cancels the job, as `jigctl run` stops its remote job: a waiting client that goes away must not
 * leave its DUT busy (labgrid's locks outlive cancelled CI jobs, #1739). A second signal leaves
 * at once and the job goes on.
 */
export async function cancelOnSignal<T>(store: QueueStore, id: string, fn: () => Promise<T>): Promise<T> {
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
export function verdictLine(job: QueueJob): string {
  const verdict = job.verdict ?? job.state;
  const where = job.failedStep && verdict !== 'pass' ? ` at ${job.failedStep}` : '';
  const why = job.verdictReason ?? job.error;
  return `job ${job.id}: ${verdict}${where}${why ? `: ${why}` : ''}`;
}

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * `jigctl queue logs ID [-f]`. With -f it follows until the job is over and exits with the job's
 * exit code (1 when it failed without one), so a CI step can be `submit` then `logs -f`.
 * Real PostgreSQL wakes it with a notification; the embedded queue (no long connections through
 * its socket) is looked at again every second.
 */
export async function queueLogsCommand(flags: QueueLogsFlags): Promise<number> {
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
export async function follow(store: QueueStore, id: string): Promise<QueueJob> {
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
