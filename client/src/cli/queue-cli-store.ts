/**
 * How `jigctl queue …` reaches the queue: the database named by `--db` or $JIGLET_QUEUE_DB,
 * opened for one command, with an unreachable database said in one sentence; and what every
 * command shares in its output (stdout, the job as JSON, whose environment the asker may see).
 */
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { networkErrorText } from '../diagnose-connection.js';
import { isConnectionError } from '../queue/connection-errors.js';
import { type QueueJob, QueueStore } from '../queue/queue-store.js';
import type { QueueFlags } from './register/queue-commands.js';
import { writeOut } from './write-out.js';

export type { QueueFlags } from './register/queue-commands.js';

/** Who is asking: the name `queue submit` records as the submitter. */
export function me(): string | undefined {
  return process.env.USER ?? process.env.LOGNAME;
}

/** Writes to stdout, waiting for it to drain. */
export function out(data: string | Buffer): Promise<void> {
  return writeOut(process.stdout, typeof data === 'string' ? Buffer.from(data) : data);
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

/** Opens the queue named by --db (or $JIGLET_QUEUE_DB), runs `fn`, and closes it. */
export async function withStore<T>(flags: QueueFlags, fn: (store: QueueStore) => Promise<T>): Promise<T> {
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

/** The job's environment as the asker may see it: values only for its submitter, as the agent does. */
export function visibleEnv(job: QueueJob): Record<string, string> {
  if (job.submittedBy !== undefined && job.submittedBy === me()) return job.env;
  return Object.fromEntries(Object.keys(job.env).map((k) => [k, '(redacted)']));
}

/** A job as `-o json` prints it. */
export function jobJson(job: QueueJob): Record<string, unknown> {
  return JSON.parse(JSON.stringify({ ...job, env: visibleEnv(job) })) as Record<string, unknown>;
}
