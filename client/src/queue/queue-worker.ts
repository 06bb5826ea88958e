/**
 * A fleet-queue worker beside one agent. It claims a queued job only for a DUT of its agent that
 * is idle and healthy right now, then leases that DUT (the agent's fencing is what keeps two runs
 * off one DUT), runs the job's steps through the agent — flash, power cycle, the command as an
 * agent job with the DUT and lease in its environment — and records the outcome and the logs.
 *
 * Exactly once: the claim is one `FOR UPDATE SKIP LOCKED` statement, and every later write is
 * fenced by (worker, attempt), so a worker that lost its claim cannot overwrite what another
 * attempt did. A worker that cannot heartbeat to the queue stops its job before the queue's
 * expiry can hand it to someone else; one that dies leaves a lease that expires on the agent
 * (the agent then stops the job) before the queue requeues it, since the lease TTL is shorter
 * than the heartbeat expiry.
 *
 * This file is the loop (look for work, claim, lease); one attempt is run by attempt-run.ts,
 * its steps by attempt-steps.ts and its heartbeat by attempt-heartbeat.ts.
 */
import { hostname } from 'node:os';
import { DutHealth } from '../../../protocol/gen/jiglet/v1/jig.js';
import { durationText } from '../../../protocol/src/duration-text.js';
import { JigletError } from '../../../protocol/src/errors.js';
import type { JigletClient } from '../jiglet-client.js';
import type { Lease } from '../lease-client.js';
import { runAttempt } from './attempt-run.js';
import { isConnectionError } from './queue-db.js';
import type { QueueJob, QueueStore } from './queue-store.js';
import {
  isAgentUnavailable,
  messageOf,
  type QueueWorkerTiming,
  retrying,
  type WorkerContext,
} from './worker-context.js';

export type { QueueWorkerTiming } from './worker-context.js';

export const DEFAULT_TIMING: QueueWorkerTiming = {
  heartbeatMs: 2000,
  expiryMs: 30_000,
  leaseTtlMs: 15_000,
  idleMs: 1000,
};

/** Longest pause between attempts while the database or the agent cannot be reached. */
const MAX_BACKOFF_MS = 10_000;

/** How a worker is set up. */
export interface QueueWorkerOptions {
  store: QueueStore;
  /** Opens an agent connection. Each running job gets its own: a client carries one lease. */
  connect: () => JigletClient;
  /** How the agent is recorded in the queue (its address), so `queue status` says where logs are. */
  agent: string;
  /** This worker's name in the queue (default host:pid). */
  name?: string;
  timing?: Partial<QueueWorkerTiming>;
  log?: (line: string) => void;
}

/** Claims queued jobs for the idle, healthy DUTs of one agent and runs each as one attempt. */
export class QueueWorker {
  readonly name: string;
  readonly #store: QueueStore;
  readonly #connect: () => JigletClient;
  readonly #agent: string;
  readonly #timing: QueueWorkerTiming;
  readonly #log: (line: string) => void;
  /** What each attempt is run with (see worker-context.ts). */
  readonly #ctx: WorkerContext;
  /** Jobs running now, by DUT. */
  readonly #running = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();
  #wake: () => void = () => undefined;
  #loop: Promise<void> | undefined;
  #main: JigletClient | undefined;

  constructor(opts: QueueWorkerOptions) {
    this.name = opts.name ?? `${hostname()}:${process.pid}`;
    this.#store = opts.store;
    this.#connect = opts.connect;
    this.#agent = opts.agent;
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.#log = opts.log ?? (() => undefined);
    if (this.#timing.leaseTtlMs >= this.#timing.expiryMs) {
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `the lease TTL (${durationText(this.#timing.leaseTtlMs)}) must be shorter than the heartbeat expiry (${durationText(this.#timing.expiryMs)}), so a dead worker's job is stopped on the agent before the queue hands it on`,
      );
    }
    this.#ctx = {
      store: this.#store,
      name: this.name,
      agent: this.#agent,
      timing: this.#timing,
      log: this.#log,
    };
  }

  /** Starts claiming; resolves once the worker has begun its first look for work. */
  start(): void {
    if (this.#loop) return;
    this.#main = this.#connect();
    // #run contains its own failures; this is the last line before an unhandled rejection, which
    // would end the `jiglet queue-worker` process and strand the jobs it runs.
    this.#loop = this.#run().catch((err: unknown) =>
      this.#log(`queue worker ${this.name}: stopped claiming: ${messageOf(err)}`),
    );
  }

  /** Wakes an idle worker now (e.g. a job was submitted). */
  poke(): void {
    this.#wake();
  }

  /**
   * Stops claiming, stops the jobs running now and gives them back to the queue (their attempt
   * counted), releases their leases, and closes the agent connection.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#wake();
    await this.#loop;
    await Promise.allSettled(this.#running.values());
    this.#main?.close();
  }

  async #run(): Promise<void> {
    let backoff = this.#timing.idleMs;
    const unlisten = await this.#store.onSubmit(() => this.#wake()).catch(() => undefined);
    try {
      while (!this.#stop.signal.aborted) {
        try {
          await this.#lookForWork();
          backoff = this.#timing.idleMs;
        } catch (err) {
          // Any failure of one look (the database or agent gone, but also a refused certificate or
          // a query error) is logged and tried again later: a worker left running for months must
          // not end because of one bad answer. Only unexpected errors are marked as such.
          const transient = isConnectionError(err) || isAgentUnavailable(err);
          this.#log(
            `queue worker ${this.name}: ${transient ? '' : 'looking for work failed: '}${messageOf(err)}; trying again in ${backoff} ms`,
          );
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
        await this.#idle(backoff);
      }
    } finally {
      await unlisten?.().catch(() => undefined);
    }
  }

  #idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = () => undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
      if (this.#stop.signal.aborted) done();
    });
  }

  /** Requeues dead workers' jobs, reports the DUTs, and starts a job on every idle DUT that has one. */
  async #lookForWork(): Promise<void> {
    await this.#store.requeueExpired(this.#timing.expiryMs);
    const client = this.#main!;
    const [duts, leases] = await Promise.all([client.jig.duts(), client.leases.list()]);
    const leased = new Set(leases.map((l) => l.dut));
    await this.#store.reportDuts(
      this.#agent,
      this.name,
      duts.map((d) => ({
        name: d.name,
        labels: d.labels,
        health: healthName(d.health),
        leased: leased.has(d.name),
      })),
    );
    for (const dut of duts) {
      if (this.#stop.signal.aborted) return;
      if (leased.has(dut.name) || this.#running.has(dut.name) || healthName(dut.health) !== 'good') continue;
      const job = await this.#store.claimNext({
        worker: this.name,
        agent: this.#agent,
        dut: dut.name,
        dutLabels: dut.labels,
      });
      if (!job) continue;
      const run = this.#leaseAndRun(job, dut.name)
        .catch((err: unknown) => this.#log(`queue worker ${this.name}: job ${job.id}: ${messageOf(err)}`))
        .finally(() => {
          this.#running.delete(dut.name);
          this.#wake();
        });
      this.#running.set(dut.name, run);
    }
  }

  async #leaseAndRun(job: QueueJob, dut: string): Promise<void> {
    const client = this.#connect();
    try {
      let lease: Lease;
      try {
        lease = await client.leases.claim({ dut, ttlMs: this.#timing.leaseTtlMs });
      } catch (err) {
        // Someone leased the DUT between our look and our claim: the job goes back untouched.
        this.#log(`queue worker ${this.name}: job ${job.id} not started on ${dut}: ${messageOf(err)}`);
        await retrying(this.#ctx, () => this.#store.unclaim(job.id, job.attempts, this.name));
        return;
      }
      await runAttempt(this.#ctx, job, dut, lease, client, this.#stop.signal);
    } catch (err) {
      this.#log(`queue worker ${this.name}: job ${job.id}: ${messageOf(err)}`);
    } finally {
      client.close();
    }
  }
}

function healthName(health: DutHealth): 'good' | 'bad' | 'maintenance' {
  if (health === DutHealth.DUT_HEALTH_BAD) return 'bad';
  if (health === DutHealth.DUT_HEALTH_MAINTENANCE) return 'maintenance';
  return 'good';
}
