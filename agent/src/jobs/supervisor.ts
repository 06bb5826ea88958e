/**
 * Runs jobs as supervised process trees: each in its own process group and cgroup, output to a
 * durable log, a compare-and-set state machine, stop = SIGTERM → grace → kill the whole cgroup.
 * The parts: job-launch.ts starts the process, process-tree.ts signals it, job-cleanup.ts sees it
 * end, job-recovery.ts handles an earlier run's jobs, job-table.ts decides what stays in memory.
 */

import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { JigletError } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import { captureInline, type JobOutput, type OnWriteError } from '../output/job-output.js';
import { OutputLog } from '../output/output-log.js';
import { OutputPump, type PumpedOutput } from '../output/output-pump.js';
import { cleanUpAfterExit, DEFAULT_GRACE_MS, putOutcome } from './job-cleanup.js';
import {
  type Entry,
  type JobView,
  type LocalGrant,
  type LocalJob,
  type Runtime,
  stdinOf,
} from './job-entry.js';
import type { JobCursor, JobFilter, JobIndex, JobIndexEntry } from './job-index.js';
import { checkWorkingDir, type LaunchSettings, launchJob, noSpaceAsExhausted } from './job-launch.js';
import type { JobRecord, JobRecords, StopReason } from './job-records.js';
import { recoverJobs } from './job-recovery.js';
import type { JobSpecInput } from './job-spec.js';
import { compareAndSet, isFinal, type JobStateName } from './job-state.js';
import { stopJob } from './job-stop.js';
import { JobTable } from './job-table.js';

/** How long a stopping agent waits for final job records still being written. */
const FLUSH_WAIT_MS = 10_000;

export { DEFAULT_GRACE_MS } from './job-cleanup.js';
export type { JobView, LocalGrant, LocalJob } from './job-entry.js';
export { WORK_DIR } from './job-launch.js';
export { JOB_DIR_OVERHEAD_BYTES } from './job-table.js';

/** Supervisor settings; how jobs are launched is in LaunchSettings. */
export interface SupervisorOptions extends LaunchSettings {
  records: JobRecords;
  log: Logger;
  /** Told of every state change. */
  events?: AgentEvents;
}

/** How a job is started. */
export interface StartOptions {
  /**
   * Runs the job with the agent's own privileges. Only for jobs the agent runs for itself
   * (power, flash, serial capture, services, health checks): their drivers need devices, cgroups
   * and the state directory. A user's command never gets this.
   */
  privileged?: boolean;
  /** What the job is for, as people name it ("power on", "flash os.img"); kept in its record. */
  title?: string;
  /**
   * What the job may do through the agent's local endpoint (README, "The local endpoint"): act as
   * its owner with this role, on its DUT, under this lease. Without it the job gets nothing there.
   * Held in memory only: a restarted agent marks every job that was running lost.
   */
  local?: LocalGrant;
}

/**
 * Owns every job process, cgroup, timer and output log of the agent. Memory holds the live jobs,
 * the last few finished ones and a compact index of the rest (issue 11); a finished job's full
 * record is read from its folder when asked for.
 */
export class Supervisor {
  readonly #table: JobTable;
  readonly #opts: SupervisorOptions;
  #closing = false;
  /** The thread that writes users' jobs' output (output-pump.ts), started with the first one. */
  #pump: Promise<OutputPump> | undefined;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#table = new JobTable(opts.records, opts.log);
  }

  /**
   * Loads the records of earlier runs. Jobs that were running when the agent died become
   * `lost`, and whatever is left in their cgroups is killed: nothing runs unsupervised.
   */
  async recover(): Promise<void> {
    const { records, containment, log } = this.#opts;
    const loaded = await recoverJobs(records, containment, log);
    // Every recovered job is over: only its index entry stays in memory.
    for (const record of loaded) this.#table.addRecovered(record);
    log.info({ jobs: loaded.length, bytes: this.#table.index.bytes }, 'job records loaded');
  }

  /** Starts a job and resolves once it is running (or has failed to start). */
  async start(spec: JobSpecInput, owner: string, opts: StartOptions = {}): Promise<JobView> {
    if (this.#closing) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down');
    // Before anything is created: a working directory the job cannot have is the caller's
    // mistake, answered as such, and leaves no record, log or cgroup behind.
    if (spec.cwd !== '') checkWorkingDir(spec.cwd);
    const { records, containment } = this.#opts;
    const id = randomUUID();
    let dir: string;
    try {
      dir = records.createDir(id);
    } catch (err) {
      throw noSpaceAsExhausted(err, records.root);
    }
    const record: JobRecord = {
      id,
      owner,
      spec,
      state: 'pending',
      oomKilled: false,
      containment: containment.mode,
      createdAt: Date.now(),
      ...(opts.title ? { title: opts.title } : {}),
    };
    const entry = this.#table.entry(record);
    if (opts.local) entry.local = { ...opts.local };
    let markStarted!: () => void;
    entry.started = new Promise((resolve) => {
      markStarted = resolve;
    });
    try {
      entry.log = OutputLog.create(dir);
      records.save(record);
    } catch (err) {
      entry.log?.close(); // releases its file descriptor
      rmSync(dir, { recursive: true, force: true });
      throw noSpaceAsExhausted(err, records.root);
    }
    this.#table.addLive(entry);
    try {
      await this.#spawn(entry, dir, opts.privileged === true);
    } catch (err) {
      // spawn() throws synchronously for some errors (ENOTDIR, E2BIG): the job must not stay
      // pending with its cgroups, so it fails like any job that could not start.
      await this.#failedSpawn(entry, err);
    } finally {
      markStarted();
    }
    return entry;
  }

  async #failedSpawn(entry: Entry, err: unknown): Promise<void> {
    const { record } = entry;
    const { log, containment } = this.#opts;
    log.error({ job: record.id, err }, 'starting the job failed');
    if (record.state !== 'pending') return;
    if (record.cgroup) {
      try {
        await containment.adopt(record.cgroup).remove();
      } catch (e) {
        log.warn({ job: record.id, err: e }, 'could not remove the cgroup of a job that did not start');
      }
    }
    try {
      await this.#fail(entry, `could not start ${record.spec.command}: ${(err as Error).message}`);
    } catch (e) {
      log.error({ job: record.id, err: e }, 'could not record the failed start');
    }
  }

  /** Launches the process, then wires its output, its supervision and its timeout. */
  async #spawn(entry: Entry, dir: string, privileged: boolean): Promise<void> {
    const { log, records } = this.#opts;
    const { record } = entry;
    const { id, spec } = record;
    const onWriteError: OnWriteError = (err) => {
      // Disk full or the state dir gone: a job whose output cannot be kept is stopped, not lost silently.
      if (record.error) return;
      record.error = `the agent could not write this job's output: ${err.message}`;
      log.error({ job: id, err }, 'output log write failed; stopping the job');
      this.stop(id, DEFAULT_GRACE_MS, 'error').catch((e) => log.error({ job: id, err: e }, 'stop failed'));
    };
    // The agent's own jobs (power, consoles) are written on this thread, where a thread hop
    // would add to every action's and every console line's time; users' jobs, whose output can
    // come at pipe speed, by the pump's thread.
    const pumped = privileged ? undefined : await this.#pumpedOutput(entry.log!, onWriteError);
    let launched: Awaited<ReturnType<typeof launchJob>>;
    try {
      launched = await launchJob(this.#opts, record, dir, privileged, pumped?.stdio);
    } finally {
      pumped?.handedOver();
    }
    if (!launched.ok) {
      await pumped?.destroy();
      await this.#fail(entry, launched.reason);
      return;
    }
    const { child, cgroup, results } = launched;
    child.stdin?.on('error', (err) => log.debug({ job: id, err }, 'job stdin closed'));
    const output: JobOutput = pumped ?? captureInline(child, entry.log!, onWriteError);
    this.#transition(entry, 'pending', 'running');
    record.pid = child.pid!;
    record.startedAt = Date.now();
    try {
      records.save(record);
    } catch (err) {
      // The process runs now and must be supervised whatever the disk says; a restart finds the
      // record still pending and reports the job lost, which is what it would be then.
      log.error({ job: id, err }, 'could not save the record of a started job');
    }
    const runtime: Runtime = { child, cgroup, done: Promise.resolve(), output, results };
    entry.runtime = runtime;
    // #supervise records its own failures; this catch is the last line against an unhandled rejection.
    runtime.done = this.#supervise(entry, runtime).catch((err) =>
      log.error({ job: id, err }, 'supervision failed'),
    );
    if (spec.timeoutMs > 0) {
      runtime.timeout = setTimeout(() => {
        this.stop(id, DEFAULT_GRACE_MS, 'timeout').catch((err) =>
          log.error({ job: id, err }, 'timeout stop failed'),
        );
      }, spec.timeoutMs);
    }
    log.info({ job: id, owner: record.owner, command: spec.command, pid: child.pid }, 'job started');
  }

  /** The pump's sockets for a user's job; undefined (written inline) if no pump can be had. */
  async #pumpedOutput(log: OutputLog, onWriteError: OnWriteError): Promise<PumpedOutput | undefined> {
    try {
      return await (await this.#livePump()).attach(log, onWriteError);
    } catch (err) {
      this.#opts.log.warn(
        { job: log.dir, err },
        "the output writer thread is not available: this job's output is written by the agent's own thread",
      );
      return undefined;
    }
  }

  /** The pump, started (again, if its thread failed) when needed; calls queue behind each other. */
  #livePump(): Promise<OutputPump> {
    const start = (): Promise<OutputPump> => OutputPump.start();
    this.#pump = (this.#pump ?? Promise.reject(new Error('not started'))).then((pump) => {
      if (pump.alive) return pump;
      pump.close().catch((err) => this.#opts.log.warn({ err }, 'could not close a failed output writer'));
      return start();
    }, start);
    return this.#pump;
  }

  /** One job (a finished one is read from disk); throws JIGLET_E_NOT_FOUND, saying so if it was pruned. */
  get(id: string): JobView {
    return this.#table.find(id);
  }

  /**
   * The jobs that are not over yet, newest first. Finished jobs are not listed here (they live
   * in the index and on disk): use `page()` or `records()` for those.
   */
  list(): JobView[] {
    return [...this.#table.live()].sort((a, b) => b.record.createdAt - a.record.createdAt);
  }

  /** The running jobs that hold a local-endpoint grant (see JobTable.localJobs). */
  localJobs(): LocalJob[] {
    return this.#table.localJobs(this.#opts.containment.mode !== 'none');
  }

  /** The local-endpoint grant of a job that is running now, if it has one. */
  localGrantOf(id: string): LocalGrant | undefined {
    const entry = this.#table.liveOne(id);
    return entry?.record.state === 'running' ? entry.local : undefined;
  }

  /** The compact index of every job kept (live and finished); read-only use. */
  get index(): Pick<JobIndex, 'size' | 'bytes' | 'get' | 'entries' | 'countByState'> {
    return this.#table.index;
  }

  /**
   * A page of jobs matching `filter`, newest first, after `cursor`; full records, read as needed.
   * `last` is where the page ended in the index (a job pruned meanwhile is skipped, not waited for).
   */
  page(
    filter: JobFilter,
    limit: number,
    cursor?: JobCursor,
  ): { jobs: JobView[]; more: boolean; last?: JobCursor } {
    return this.#table.page(filter, limit, cursor);
  }

  /** Full records of the jobs whose index entry passes `match`, oldest first. */
  records(match: (e: Readonly<JobIndexEntry>) => boolean): JobRecord[] {
    return this.#table.matching(match);
  }

  /**
   * Takes finished jobs out of the index (their ids are remembered as pruned) and returns those
   * taken; the caller deletes their folders. A job that is not over is never taken.
   */
  forget(ids: readonly string[]): JobIndexEntry[] {
    return this.#table.forget(ids);
  }

  /** Refreshes the sizes of live jobs in the index (their logs grow). */
  refreshLiveBytes(): void {
    this.#table.refreshLiveBytes();
  }

  /** Records a finished job's measured folder size, in the index and in its record. */
  setDiskBytes(id: string, bytes: number): void {
    this.#table.setDiskBytes(id, bytes);
  }

  /**
   * Stops a running job: SIGTERM to the whole tree, then after `graceMs` a kill of its cgroup.
   * Resolves with the final record. Stopping a job that is already over is an illegal transition that says how it ended.
   */
  async stop(id: string, graceMs: number, reason: StopReason): Promise<JobView> {
    const entry = this.#table.find(id);
    if (entry.record.state === 'pending') await entry.started;
    await stopJob(entry, graceMs, reason, this.#opts.log);
    return entry;
  }

  /** Resolves with the job once it has reached a final state (at once if it has). */
  async ended(id: string): Promise<JobView> {
    const entry = this.#table.find(id);
    if (entry.record.state === 'pending') await entry.started;
    await entry.runtime?.done;
    return entry;
  }

  /** The stdin of a running job started with `stdin: true`. */
  stdinOf(id: string): Writable {
    return stdinOf(this.#table.find(id));
  }

  /** Stops every running job (reason "shutdown") and refuses new ones. */
  async shutdown(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.#closing = true;
    // Pending ones too: a start already under way when the shutdown began spawns after it, and
    // would leave a process and an open log behind an agent that has stopped.
    const live = [...this.#table.live()].filter((e) => !isFinal(e.record.state));
    // Each stop is bounded (see stop()); a job that would not die is reported and left behind
    // rather than hanging the shutdown. The next start finds it `lost` and kills what is left.
    await Promise.all(
      live.map(async (e) => {
        await e.started;
        if (isFinal(e.record.state) || !e.runtime) return;
        try {
          await this.stop(e.record.id, graceMs, 'shutdown');
        } catch (err) {
          this.#opts.log.error(
            { job: e.record.id, err: (err as Error).message },
            'job left behind at shutdown: it did not end',
          );
        }
      }),
    );
    // Outcomes recorded just before (a job ended as the agent was told to stop) reach the disk,
    // unless the disk stopped answering: the agent still stops, and says what may be lost.
    const giveUp = new AbortController();
    const flushed = await Promise.race([
      this.#opts.records.flush().then(() => true),
      delay(FLUSH_WAIT_MS, false, { ref: false, signal: giveUp.signal }).catch(() => false),
    ]);
    giveUp.abort(); // the timer, once the records are in
    const pump = await this.#pump?.catch(() => undefined);
    await pump?.close();
    if (!flushed)
      this.#opts.log.error(
        `final job records were still being written ${FLUSH_WAIT_MS / 1000} s after the stop: the state disk is not answering; after a restart those jobs may show as lost`,
      );
  }

  /** Waits for the job's end (see job-cleanup.ts), then records it: exited or stopped. */
  async #supervise(entry: Entry, rt: Runtime): Promise<void> {
    const { record } = entry;
    const { code, signal } = await cleanUpAfterExit(record, rt, this.#opts.log);
    // The outcome is on the record before the change is announced, so listeners see it.
    const to = putOutcome(record, { code, signal }, rt.output.stderrTail);
    this.#transition(entry, 'running', to);
    delete record.pid;
    record.outputBytes = entry.log!.length;
    try {
      // Durable before the log ends, so a follower told how the job ended can rely on it.
      await this.#opts.records.saveFinal(record);
    } catch (err) {
      // The in-memory record stays right; a restart would report the job as lost instead.
      this.#opts.log.error({ job: record.id, err }, 'could not save the final job record');
    }
    entry.log!.close();
    delete entry.runtime;
    this.#table.retire(entry);
    this.#opts.log.info(
      {
        job: record.id,
        state: to,
        code,
        signal,
        oom: record.oomKilled,
        ms: record.endedAt! - (record.startedAt ?? 0),
      },
      'job ended',
    );
  }

  /** A job that never ran fails: only ever from pending, through the compare-and-set. */
  async #fail(entry: Entry, reason: string): Promise<void> {
    this.#transition(entry, 'pending', 'failed');
    entry.record.error = reason;
    entry.record.endedAt = Date.now();
    entry.record.outputBytes = entry.log?.length ?? 0;
    try {
      await this.#opts.records.saveFinal(entry.record);
    } catch (err) {
      this.#opts.log.error(
        { job: entry.record.id, err },
        'could not save the record of a job that failed to start',
      );
    } finally {
      entry.log?.close();
      this.#table.retire(entry);
    }
    this.#opts.log.warn({ job: entry.record.id, reason }, 'job failed to start');
  }

  /** Compare-and-set (job-state.ts), then the index follows and listeners hear of it. */
  #transition(entry: Entry, from: JobStateName, to: JobStateName): void {
    const { record } = entry;
    compareAndSet(record, from, to);
    const indexed = this.#table.index.get(record.id);
    if (indexed) indexed.state = to;
    this.#opts.events?.publish({
      kind: 'job',
      at: Date.now(),
      job: record.id,
      owner: record.owner,
      dut: record.spec.dut,
      command: [record.spec.command, ...record.spec.args].join(' '),
      title: record.title,
      state: to,
      exitCode: record.exitCode,
      signal: record.signal,
      stopReason: record.stopReason,
    });
  }
}
