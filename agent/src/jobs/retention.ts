/**
 * The background pruner of finished jobs (issue 11). It runs on its own timer (unref'd: it never
 * keeps the process alive) and after every `pruneEveryJobs` ended jobs, never inside a request;
 * one pass at a time. A pass asks the policy what to remove, takes those jobs out of the
 * supervisor's index (a late reader is then told the job was pruned), deletes their folders off
 * the event loop, and then measures the folders of jobs whose size is still an estimate (the
 * next pass uses the measurement). Every pass that removes something is logged with what it freed.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AgentEvents } from '../events/agent-events.js';
import type { JobRecords } from './job-records.js';
import { isFinal } from './job-state.js';
import { type LeaseSpan, type PruneReason, planPrune, type RetentionPolicy } from './retention-policy.js';
import type { Supervisor } from './supervisor.js';

/** Folders measured per pass: the first pass after an upgrade must not walk 50 000 at once. */
const MEASURE_PER_PASS = 1000;
/**
 * Folders deleted (and measured) at the same time: enough to keep libuv's four threads busy
 * (17 000 folders take ~1 s instead of ~3 s at 8), few enough that a follower's read waits
 * behind at most a few dozen small file operations.
 */
const FS_CONCURRENCY = 32;
/** A job folder walk stops counting after this many entries (a work dir full of small files). */
const MAX_WALK_ENTRIES = 100_000;

/** What one pass did. */
export interface PruneReport {
  pruned: number;
  bytesFreed: number;
  byReason: Record<PruneReason, number>;
  /** Finished jobs kept because a held lease covers them. */
  pinned: number;
  keptJobs: number;
  keptBytes: number;
  ms: number;
}

/** Options of the pruner. */
export interface RetentionOptions {
  supervisor: Supervisor;
  records: JobRecords;
  policy: RetentionPolicy;
  events: AgentEvents;
  log: Logger;
  /**
   * Where a user's job has its working folder outside its job folder (`<state>/work/<id>`, see
   * Job privileges); it is measured and deleted with the job.
   */
  workDirOf?: (id: string) => string;
  /** The leases that protect jobs: held ones, and ended ones still in the run record. */
  leaseSpans: () => LeaseSpan[];
  now?: () => number;
}

/** Owns the prune timer and the passes; close() ends both. */
export class Retention {
  readonly #opts: RetentionOptions;
  readonly #log: Logger;
  readonly #timer: NodeJS.Timeout;
  readonly #unsubscribe: () => void;
  #endedSinceLast = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #queued = false;
  #immediate: NodeJS.Immediate | undefined;
  #closed = false;
  /** Totals since the agent started, for metrics. */
  readonly totals = { passes: 0, pruned: 0, bytesFreed: 0 };

  constructor(opts: RetentionOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ part: 'retention' });
    this.#timer = setInterval(() => this.#kick(), opts.policy.intervalMs);
    this.#timer.unref();
    this.#unsubscribe = opts.events.subscribe((event) => {
      if (event.kind !== 'job' || !isFinal(event.state)) return;
      if (++this.#endedSinceLast >= opts.policy.pruneEveryJobs) this.#kick();
    });
    // An agent that was down for a week has work at once, not in ten minutes.
    this.#kick();
  }

  /** Runs a pass now (after the one running, if any) and resolves with its report. */
  prune(): Promise<PruneReport> {
    const pass = this.#chain.then(() => this.#pass());
    this.#chain = pass.catch(() => undefined);
    return pass;
  }

  /** Stops the timer and waits for a running pass; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearImmediate(this.#immediate);
    this.#unsubscribe();
    await this.#chain;
  }

  /**
   * Queues a background pass unless one is already waiting to run. On the next turn of the
   * event loop: a job's end (which triggers it) must not wait for a pass to be planned.
   */
  #kick(): void {
    if (this.#queued || this.#closed) return;
    this.#queued = true;
    this.#immediate = setImmediate(() => {
      this.#immediate = undefined;
      this.prune().catch((err: unknown) => this.#log.error({ err }, 'pruning job records failed'));
    });
  }

  async #pass(): Promise<PruneReport> {
    const { supervisor, records, policy } = this.#opts;
    const started = performance.now();
    if (this.#closed) {
      // The agent is stopping: its supervisor may be gone; nothing is removed.
      const kept = { keptJobs: supervisor.index.size, keptBytes: supervisor.index.bytes };
      return {
        pruned: 0,
        bytesFreed: 0,
        byReason: { age: 0, count: 0, bytes: 0 },
        pinned: 0,
        ...kept,
        ms: 0,
      };
    }
    // From here on, a new trigger queues the next pass instead of being folded into this one.
    this.#queued = false;
    this.#endedSinceLast = 0;
    supervisor.refreshLiveBytes();
    const now = (this.#opts.now ?? Date.now)();
    const plan = planPrune(supervisor.index.entries(), this.#opts.leaseSpans(), policy, now);
    const reasons = new Map(plan.prune.map((p) => [p.entry.id, p.reason]));
    const taken = supervisor.forget([...reasons.keys()]);
    const byReason: Record<PruneReason, number> = { age: 0, count: 0, bytes: 0 };
    let bytesFreed = 0;
    let deleted = 0;
    let failed = 0;
    await eachLimited(taken, FS_CONCURRENCY, async (e) => {
      if (this.#closed) return;
      try {
        await records.remove(e.id);
        const work = this.#opts.workDirOf?.(e.id);
        if (work) await rm(work, { recursive: true, force: true, maxRetries: 2 });
        bytesFreed += e.bytes;
        deleted++;
        byReason[reasons.get(e.id)!]++;
      } catch (err) {
        failed++;
        this.#log.warn({ job: e.id, err }, 'could not delete a pruned job folder');
      }
    });
    // After the deletions: no time is spent measuring folders that were about to go.
    await this.#measure();
    const report: PruneReport = {
      // Folders left by a close mid-pass are found and pruned again by the next agent.
      pruned: deleted,
      bytesFreed,
      byReason,
      pinned: plan.pinned,
      keptJobs: supervisor.index.size,
      keptBytes: supervisor.index.bytes,
      ms: Math.round(performance.now() - started),
    };
    this.totals.passes++;
    this.totals.pruned += report.pruned;
    this.totals.bytesFreed += bytesFreed;
    if (report.pruned > 0 || failed > 0) this.#log.info(report, 'pruned finished jobs');
    else this.#log.debug(report, 'nothing to prune');
    return report;
  }

  /** Measures the folders of finished jobs whose size is still an estimate. */
  async #measure(): Promise<void> {
    const { supervisor, records } = this.#opts;
    // Newest first: the oldest are the likeliest to be pruned anyway.
    const todo = supervisor.index
      .entries()
      .filter((e) => !e.measured && isFinal(e.state))
      .slice(-MEASURE_PER_PASS)
      .reverse();
    await eachLimited(todo, FS_CONCURRENCY, async (e) => {
      if (this.#closed) return;
      try {
        const work = this.#opts.workDirOf?.(e.id);
        const workBytes = work ? await diskUsage(work).catch(zeroIfMissing) : 0;
        supervisor.setDiskBytes(e.id, (await diskUsage(records.dirOf(e.id))) + workBytes);
      } catch (err) {
        // Pruned meanwhile, or unreadable: the estimate stays.
        this.#log.debug({ job: e.id, err }, 'could not measure a job folder');
      }
    });
  }
}

/** Bytes a folder takes on disk (allocated blocks, as du counts them), symlinks not followed. */
export async function diskUsage(path: string): Promise<number> {
  let total = 0;
  let seen = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    total += st.blocks * 512;
    if (!st.isDirectory()) return;
    for (const name of await readdir(p)) {
      if (++seen > MAX_WALK_ENTRIES) return;
      await walk(join(p, name));
    }
  };
  await walk(path);
  return total;
}

/** 0 for a folder that does not exist (an agent-owned job has no work folder there). */
function zeroIfMissing(err: unknown): number {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
  throw err;
}

/** Runs `fn` over `items` with at most `limit` at a time (a sliding window, not batches). */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
