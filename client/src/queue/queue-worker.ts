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
 */
import { hostname } from 'node:os';
import { DutHealth } from '../../../protocol/gen/jiglet/v1/jig.js';
import { durationText } from '../../../protocol/src/duration-text.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { MAX_TEST_CASES, type TestCase, testCaseSummary } from '../../../protocol/src/test-cases.js';
import type { JigletClient } from '../jiglet-client.js';
import { testCasesOf } from '../job-test-cases.js';
import type { Lease } from '../lease-client.js';
import { renderReport } from '../report/render-report.js';
import { StepFailed, step, verdictOfCommand } from './attempt-verdict.js';
import { isConnectionError } from './queue-db.js';
import { type AttemptEnd, INFRA_ERRORS_BEFORE_HEALTH_CHECK, type Verdict } from './queue-job.js';
import { QueueLogWriter } from './queue-log-writer.js';
import type { QueueJob, QueueStore } from './queue-store.js';

/** How a worker paces itself; every value is in milliseconds. */
export interface QueueWorkerTiming {
  /** How often a running job's heartbeat reaches the queue and its lease is renewed. */
  heartbeatMs: number;
  /** A job whose heartbeat is older than this is requeued (by any worker). */
  expiryMs: number;
  /** The TTL of the DUT leases the worker holds; shorter than expiryMs (see above). */
  leaseTtlMs: number;
  /** How long an idle worker waits before it looks for work again, unless woken sooner. */
  idleMs: number;
}

export const DEFAULT_TIMING: QueueWorkerTiming = {
  heartbeatMs: 2000,
  expiryMs: 30_000,
  leaseTtlMs: 15_000,
  idleMs: 1000,
};

/** How long a flashed DUT gets to boot (within the job's own timeout). */
const BOOT_TIMEOUT_MS = 5 * 60_000;

/** Longest pause between attempts while the database or the agent cannot be reached. */
const MAX_BACKOFF_MS = 10_000;

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

/** How an attempt ended; `retry: false` keeps an infra-error from being retried (another attempt cannot help). */
type Outcome = AttemptEnd & { retry?: boolean };

/** Why a running job was stopped before its command finished. */
class Interrupted extends Error {
  constructor(
    readonly outcome: Outcome,
    readonly requeue: boolean,
  ) {
    super(outcome.reason);
  }
}

const STATE_OF: Record<Verdict, 'succeeded' | 'failed' | 'cancelled'> = {
  pass: 'succeeded',
  fail: 'failed',
  'infra-error': 'failed',
  timeout: 'failed',
  cancelled: 'cancelled',
};

export class QueueWorker {
  readonly name: string;
  readonly #store: QueueStore;
  readonly #connect: () => JigletClient;
  readonly #agent: string;
  readonly #timing: QueueWorkerTiming;
  readonly #log: (line: string) => void;
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
        await this.#retrying(() => this.#store.unclaim(job.id, job.attempts, this.name));
        return;
      }
      await this.#runLeased(job, dut, lease, client);
    } catch (err) {
      this.#log(`queue worker ${this.name}: job ${job.id}: ${messageOf(err)}`);
    } finally {
      client.close();
    }
  }

  async #runLeased(job: QueueJob, dut: string, lease: Lease, client: JigletClient): Promise<void> {
    const attempt = job.attempts;
    const logs = new QueueLogWriter(this.#store, job.id, attempt);
    const interrupt = new AbortController();
    const stopWith = (outcome: Outcome, requeue: boolean): void => {
      if (!interrupt.signal.aborted) interrupt.abort(new Interrupted(outcome, requeue));
    };
    const onStop = (): void =>
      stopWith(
        {
          verdict: 'infra-error',
          step: 'worker',
          reason: `worker ${this.name} stopped; the job goes back to the queue`,
        },
        true,
      );
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    const heartbeat = this.#heartbeat(job, lease, client, stopWith);
    let outcome: Outcome;
    let requeue = false;
    // What the command reported, for the attempt's report as well as the queue.
    const ran: { cases: TestCase[] } = { cases: [] };
    try {
      await this.#retrying(() => this.#store.markRunning(job.id, attempt, this.name, { leaseId: lease.id }));
      client.lease = lease.id;
      outcome = await this.#steps(job, dut, lease, client, logs, interrupt.signal, ran);
    } catch (err) {
      const reason = interrupt.signal.reason;
      if (reason instanceof Interrupted) {
        outcome = reason.outcome;
        requeue = reason.requeue;
      } else if (err instanceof StepFailed) outcome = err.end;
      else outcome = { verdict: 'infra-error', step: 'worker', reason: messageOf(err) };
    } finally {
      heartbeat.stop();
      this.#stop.signal.removeEventListener('abort', onStop);
      client.lease = undefined;
    }
    logs.note(
      `attempt ${attempt}: ${outcome.verdict}${outcome.step && outcome.verdict !== 'pass' ? ` at ${outcome.step}` : ''}${outcome.exitCode !== undefined ? ` (exit ${outcome.exitCode})` : ''}${outcome.reason ? `: ${outcome.reason}` : ''}`,
    );
    await logs.close();
    // The lease ends before the outcome is written: whoever sees the job finished may claim the DUT.
    await client.leases.release(lease.id).catch(() => undefined);
    await this.#storeReport(job, attempt, lease, client, outcome, ran.cases);
    const recorded = await this.#retrying(() => this.#record(job, attempt, outcome, requeue));
    if (!recorded)
      this.#log(`queue worker ${this.name}: job ${job.id} attempt ${attempt} was no longer ours`);
    if (recorded && outcome.verdict === 'infra-error' && outcome.step !== 'worker')
      await this.#afterInfraError(client, dut);
  }

  /** Writes the attempt's end: handed back, retried after an infra-error, or the job's end. */
  async #record(job: QueueJob, attempt: number, outcome: Outcome, requeue: boolean): Promise<boolean> {
    if (requeue) {
      return this.#store.giveBack(job.id, attempt, this.name, outcome.reason ?? 'interrupted', outcome.step);
    }
    if (outcome.verdict === 'infra-error' && outcome.retry !== false) {
      return (await this.#store.retry(job.id, attempt, this.name, outcome)) !== undefined;
    }
    return this.#store.finish(job.id, attempt, this.name, {
      state: STATE_OF[outcome.verdict],
      verdict: outcome.verdict,
      step: outcome.step,
      exitCode: outcome.exitCode,
      error: outcome.reason,
      agentJobId: outcome.agentJobId,
    });
  }

  /**
   * After INFRA_ERRORS_BEFORE_HEALTH_CHECK infra-errors in a row on a DUT (LAVA's rule), runs its
   * health check, or marks it bad when it has none, so the queue stops feeding it jobs. Both need
   * the worker's identity to be an admin; when it is not, the log says what to do.
   */
  async #afterInfraError(client: JigletClient, dut: string): Promise<void> {
    try {
      const streak = await this.#store.infraErrorStreak(this.#agent, dut);
      if (streak === 0 || streak % INFRA_ERRORS_BEFORE_HEALTH_CHECK !== 0) return;
      const why = `${streak} queue attempts in a row ended in an infra-error on ${dut}`;
      const info = (await client.jig.duts()).find((d) => d.name === dut);
      if (info?.hasHealthCheck) {
        this.#log(`queue worker ${this.name}: ${why}; running its health check`);
        const result = await client.jig.checkHealth(dut);
        this.#log(
          `queue worker ${this.name}: health check of ${dut} ${result.passed ? 'passed' : 'failed; it is now bad'} (agent job ${result.jobId})`,
        );
      } else {
        await client.jig.setState(dut, 'bad', `${why}, and it has no health check; set it good when fixed`);
        this.#log(`queue worker ${this.name}: ${why}; it has no health check, so it is now bad`);
      }
    } catch (err) {
      this.#log(
        `queue worker ${this.name}: could not check or quarantine ${dut} after repeated infra-errors: ${messageOf(err)}; an admin should look at it (jigctl dut check ${dut})`,
      );
    }
  }

  /**
   * Stores the attempt's run report: the timeline of its lease, fetched once the lease has ended
   * (so the whole run is in it), as HTML. Bounded well inside the heartbeat expiry, which runs
   * from the last heartbeat; a report that cannot be made or stored is noted in the job's log and
   * changes nothing about the job.
   */
  async #storeReport(
    job: QueueJob,
    attempt: number,
    lease: Lease,
    client: JigletClient,
    outcome: Outcome,
    cases: readonly TestCase[],
  ): Promise<void> {
    try {
      const timeline = await client.records.timeline(
        { leaseId: lease.id },
        { deadlineMs: this.#timing.expiryMs / 4 },
      );
      const html = renderReport(timeline, {
        title: `queue job ${job.id}, attempt ${attempt}, on ${lease.dut}`,
        agent: this.#agent,
        verdict: { verdict: outcome.verdict, reason: outcome.reason, step: outcome.step },
        testCases: cases,
      });
      await this.#store.saveReport(job.id, attempt, html);
    } catch (err) {
      this.#log(`queue worker ${this.name}: job ${job.id}: no run report: ${messageOf(err)}`);
      const note = new QueueLogWriter(this.#store, job.id, attempt);
      note.note(`no run report for this attempt: ${messageOf(err)}`);
      await note.close(Date.now() + this.#timing.expiryMs / 4);
    }
  }

  /** Flash (if an image was given), power cycle, then the command; resolves with the outcome. */
  async #steps(
    job: QueueJob,
    dut: string,
    lease: Lease,
    client: JigletClient,
    logs: QueueLogWriter,
    signal: AbortSignal,
    ran: { cases: TestCase[] },
  ): Promise<Outcome> {
    const deadline = Date.now() + job.timeoutMs;
    const check = (): void => {
      if (signal.aborted) throw signal.reason;
    };
    logs.note(
      `attempt ${job.attempts} on ${dut} (agent ${this.#agent}, lease ${lease.id}, worker ${this.name})`,
    );
    const image = job.image;
    if (image) {
      logs.note(`flashing ${image.path}`);
      const flashed = await step('flash', signal, () => client.flash(dut, image.path, { signal }));
      if (flashed.imageSha256 !== image.sha256) {
        throw new StepFailed(
          'flash',
          new Error(
            `${image.path} changed since it was submitted (sha256 ${flashed.imageSha256}, submitted ${image.sha256}); submit it again`,
          ),
          false,
        );
      }
      logs.note(`flashed (agent job ${flashed.jobId})`);
    }
    check();
    logs.note('power cycle');
    await step('power', signal, () => client.jig.power(dut, 'off'));
    check();
    if (image) {
      // A flashed image must boot before its tests run: a DUT that never shows its boot pattern
      // (the jig description's shell.bootedPattern) is an infra-error at `boot`, not a failed test.
      const bootMs = Math.min(BOOT_TIMEOUT_MS, Math.max(1000, deadline - Date.now()));
      const booted = await step('boot', signal, () =>
        client.jig.gotoState(dut, 'booted', { timeoutMs: bootMs }),
      );
      logs.note(`booted in ${durationText(booted.durationMs)}`);
    } else await step('power', signal, () => client.jig.power(dut, 'on'));
    check();
    const [command, ...args] = job.command;
    const remaining = Math.max(1000, deadline - Date.now());
    const started = await step('command', signal, () =>
      client.start({
        command: command!,
        args,
        dut,
        // The submitter's variables first: the worker's own always win (submit refuses JIGLET_*).
        env: {
          ...job.env,
          JIGLET_DUT: dut,
          JIGLET_LEASE: lease.id,
          JIGLET_QUEUE_JOB: job.id,
          JIGLET_ATTEMPT: String(job.attempts),
        },
        timeoutMs: remaining,
      }),
    );
    await this.#retrying(() => this.#store.setAgentJob(job.id, job.attempts, this.name, started.id));
    logs.note(`running ${job.command.join(' ')} as agent job ${started.id}`);
    const onAbort = (): void => {
      void client.stop(started.id, 2000).catch(() => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const done = await step('agent', signal, async () => {
        for await (const event of client.output(started.id, { follow: true })) {
          if (event.type === 'chunk') logs.write(event.data);
          else return event.job;
        }
        throw new JigletError(
          'JIGLET_E_INTERNAL',
          `the output of agent job ${started.id} ended without its record`,
        );
      });
      check();
      ran.cases = testCasesOf(done);
      await this.#storeTestCases(job, ran.cases, logs);
      return verdictOfCommand(done, job.command, job.timeoutMs);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Stores the test cases the agent read from the job's $JIGLET_RESULTS; a failure is noted, not fatal. */
  async #storeTestCases(job: QueueJob, cases: TestCase[], logs: QueueLogWriter): Promise<void> {
    if (cases.length === 0) return;
    try {
      const dropped = await this.#retrying(() => this.#store.saveTestCases(job.id, job.attempts, cases));
      logs.note(
        `${testCaseSummary(cases)}${dropped > 0 ? ` (${dropped} past the first ${MAX_TEST_CASES} not stored)` : ''}`,
      );
    } catch (err) {
      logs.note(`the test cases of this attempt could not be stored: ${messageOf(err)}`);
    }
  }

  /**
   * Every heartbeatMs: tells the queue the job is alive (and hears of a cancel), and renews the
   * lease. A queue that stays unreachable for most of the expiry stops the job, since the queue
   * will soon hand it to another worker.
   */
  #heartbeat(
    job: QueueJob,
    lease: Lease,
    client: JigletClient,
    stopWith: (outcome: Outcome, requeue: boolean) => void,
  ): { stop: () => void } {
    const { heartbeatMs, expiryMs } = this.#timing;
    let lastBeat = Date.now();
    let busy = false;
    const beat = async (): Promise<void> => {
      try {
        const answer = await this.#store.heartbeat(job.id, job.attempts, this.name);
        lastBeat = Date.now();
        if (!answer.ours)
          stopWith(
            {
              verdict: 'infra-error',
              step: 'worker',
              reason: 'the queue gave this attempt to another worker',
              retry: false,
            },
            false,
          );
        else if (answer.cancelRequested)
          stopWith({ verdict: 'cancelled', reason: 'cancelled on request' }, false);
      } catch (err) {
        if (Date.now() - lastBeat > expiryMs - 2 * heartbeatMs) {
          stopWith(
            {
              verdict: 'infra-error',
              step: 'worker',
              reason: `the queue was unreachable for ${Date.now() - lastBeat} ms (${messageOf(err)}); stopped before the queue requeues it`,
            },
            true,
          );
        }
      }
      await client.leases.renew(lease.id).catch((err: unknown) => {
        if (!isAgentUnavailable(err))
          stopWith(
            {
              verdict: 'infra-error',
              step: 'lease',
              reason: `lost the lease on ${lease.dut}: ${messageOf(err)}`,
            },
            true,
          );
      });
    };
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void beat().finally(() => {
        busy = false;
      });
    }, heartbeatMs);
    return { stop: () => clearInterval(timer) };
  }

  /**
   * Runs a queue write, retrying while the database cannot be reached: an outcome that is lost
   * would make the job run again. Gives up after the heartbeat expiry, when the queue has
   * requeued the job anyway.
   */
  async #retrying<T>(write: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + this.#timing.expiryMs;
    let pause = 100;
    for (;;) {
      try {
        return await write();
      } catch (err) {
        if (!isConnectionError(err) || Date.now() > giveUpAt) throw err;
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 2000);
      }
    }
  }
}

function healthName(health: DutHealth): 'good' | 'bad' | 'maintenance' {
  if (health === DutHealth.DUT_HEALTH_BAD) return 'bad';
  if (health === DutHealth.DUT_HEALTH_MAINTENANCE) return 'maintenance';
  return 'good';
}

function isAgentUnavailable(err: unknown): boolean {
  if (!(err instanceof JigletError)) return false;
  return err.code === 'JIGLET_E_UNAVAILABLE' || err.code === 'JIGLET_E_DEADLINE_EXCEEDED';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
