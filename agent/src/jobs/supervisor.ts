/**
 * Runs jobs as supervised process trees: each in its own process group and cgroup, output to a
 * durable log, a compare-and-set state machine, stop = SIGTERM → grace → kill the whole cgroup.
 * A job is over when its leader exited, its cgroup is empty and its pipes are drained — Node's
 * 'close' alone is not job exit, because a grandchild can hold the pipes open.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { JigletError, notFound } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import { OutputLog } from '../output/output-log.js';
import { resolveExecutable } from './command-path.js';
import type { Containment, JobCgroup } from './containment.js';
import type { JobRecord, JobRecords, StopReason } from './job-records.js';
import type { JobSpecInput } from './job-spec.js';
import { assertTransition, isFinal, type JobStateName } from './job-state.js';

/** Time between SIGTERM and SIGKILL when the client names none. */
export const DEFAULT_GRACE_MS = 5000;
/** How long pipes may stay open after the tree is gone (only matters without a cgroup). */
const PIPE_DRAIN_MS = 2000;
/**
 * Joins the cgroups, then execs the job. Runs before the job's first instruction, so every
 * descendant (even one that calls setsid) is contained. Exit 125 = could not join a cgroup.
 */
const SHIM = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

/** Supervisor settings. */
export interface SupervisorOptions {
  records: JobRecords;
  containment: Containment;
  log: Logger;
  /** Variables every job gets (PATH, LANG); a job's own env is added on top. */
  baseEnv: Record<string, string>;
  /** Told of every state change. */
  events?: AgentEvents;
}

/** A job as the rest of the agent sees it. */
export interface JobView {
  readonly record: Readonly<JobRecord>;
  /** The job's output log (opened on demand for jobs of earlier agent runs). */
  output(): OutputLog;
  /** Bytes of output so far. */
  outputBytes(): number;
}

interface Runtime {
  child: ChildProcess;
  cgroup: JobCgroup | null;
  done: Promise<void>;
  timeout?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
}

interface Entry extends JobView {
  record: JobRecord;
  log?: OutputLog;
  runtime?: Runtime;
  /** Settles once start() has finished spawning (or failing), so a racing stop can wait. */
  started: Promise<void>;
}

/** Owns every job process, cgroup, timer and output log of the agent. */
export class Supervisor {
  readonly #jobs = new Map<string, Entry>();
  readonly #opts: SupervisorOptions;
  #closing = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
  }

  /**
   * Loads the records of earlier runs. Jobs that were running when the agent died become
   * `lost`, and whatever is left in their cgroups is killed: nothing runs unsupervised.
   */
  async recover(): Promise<void> {
    const { records, containment, log } = this.#opts;
    const loaded = records.loadAll((dir, err) =>
      log.error({ dir, err }, 'skipping an unreadable job record'),
    );
    for (const record of loaded) {
      if (!isFinal(record.state)) {
        if (record.cgroup) {
          try {
            const cg = containment.adopt(record.cgroup);
            const leftovers = await cg.pids();
            await cg.killAll();
            await cg.remove();
            if (leftovers.length > 0)
              log.warn({ job: record.id, pids: leftovers }, 'killed leftovers of lost job');
          } catch (err) {
            // A record whose cgroup paths fail validation must not keep the agent from starting.
            log.error(
              { job: record.id, err, cgroup: record.cgroup },
              'could not clean up the cgroup of a lost job',
            );
          }
        }
        assertTransition(record.id, record.state, 'lost');
        record.state = 'lost';
        record.error = 'the agent stopped while this job was running';
        record.endedAt = Date.now();
        record.outputBytes = logLengthOrZero(records.dirOf(record.id), log);
        delete record.pid;
        records.save(record);
      }
      this.#jobs.set(record.id, this.#entry(record));
    }
    log.info({ jobs: loaded.length }, 'job records loaded');
  }

  /** Starts a job and resolves once it is running (or has failed to start). */
  async start(spec: JobSpecInput, owner: string): Promise<JobView> {
    if (this.#closing) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down');
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
    };
    const entry = this.#entry(record);
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
    this.#jobs.set(id, entry);
    try {
      await this.#spawn(entry, dir);
    } finally {
      markStarted();
    }
    return entry;
  }

  async #spawn(entry: Entry, dir: string): Promise<void> {
    const { containment, log, baseEnv, records } = this.#opts;
    const { record } = entry;
    const { id, spec } = record;

    const env: Record<string, string> = {
      ...baseEnv,
      ...spec.env,
      JIGLET_JOB_ID: id,
      ...(spec.dut ? { JIGLET_DUT: spec.dut } : {}),
    };
    let cwd = spec.cwd;
    if (cwd === '') {
      cwd = join(dir, 'work');
      mkdirSync(cwd);
    }
    const executable = resolveExecutable(spec.command, env.PATH ?? '', cwd);
    if (!executable.ok) {
      this.#fail(entry, executable.reason);
      return;
    }
    let cgroup: JobCgroup | null = null;
    try {
      cgroup = containment.mode === 'none' ? null : await containment.create(id, spec.limits);
      if (cgroup) record.cgroup = cgroup.paths;
    } catch (err) {
      this.#fail(entry, `could not create the job's cgroup: ${(err as Error).message}`);
      return;
    }
    const child = spawn(
      '/bin/sh',
      ['-c', SHIM, 'jiglet-shim', ...(cgroup?.procsFiles ?? []), '--', executable.path, ...spec.args],
      {
        cwd,
        env,
        detached: true,
        stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      },
    );
    const spawned = await new Promise<Error | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', resolve);
    });
    if (spawned) {
      await cgroup?.remove();
      this.#fail(entry, `could not start ${spec.command}: ${spawned.message}`);
      return;
    }
    child.stdin?.on('error', (err) => log.debug({ job: id, err }, 'job stdin closed'));
    const output = entry.log!;
    const append = (stream: 'stdout' | 'stderr', chunk: Buffer): void => {
      try {
        output.append(stream, chunk);
      } catch (err) {
        // Disk full or the state dir gone: a job whose output cannot be kept is stopped, not lost silently.
        if (record.error) return;
        record.error = `the agent could not write this job's output: ${(err as Error).message}`;
        log.error({ job: id, err }, 'output log write failed; stopping the job');
        this.stop(id, DEFAULT_GRACE_MS, 'error').catch((e) => log.error({ job: id, err: e }, 'stop failed'));
      }
    };
    child.stdout!.on('data', (chunk: Buffer) => append('stdout', chunk));
    child.stderr!.on('data', (chunk: Buffer) => append('stderr', chunk));
    this.#transition(entry, 'pending', 'running');
    record.pid = child.pid!;
    record.startedAt = Date.now();
    records.save(record);
    const runtime: Runtime = { child, cgroup, done: Promise.resolve() };
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

  /** One job; throws JIGLET_E_NOT_FOUND. */
  get(id: string): JobView {
    const entry = this.#jobs.get(id);
    if (!entry) throw notFound(`no job with id "${id.slice(0, 80)}"`);
    return entry;
  }

  /** All jobs, newest first. */
  list(): JobView[] {
    return [...this.#jobs.values()].sort((a, b) => b.record.createdAt - a.record.createdAt);
  }

  /**
   * Stops a running job: SIGTERM to the whole tree, then after `graceMs` a kill of its cgroup.
   * Resolves with the final record. Stopping a job that is already over is an illegal transition.
   */
  async stop(id: string, graceMs: number, reason: StopReason): Promise<JobView> {
    const entry = this.#jobs.get(id);
    if (!entry) throw notFound(`no job with id "${id.slice(0, 80)}"`);
    if (entry.record.state === 'pending') await entry.started;
    const { record, runtime } = entry;
    if (isFinal(record.state) || !runtime) {
      assertTransition(id, record.state, 'stopped');
      return entry;
    }
    if (record.stopReason === undefined) {
      record.stopReason = reason;
      this.#signalTree(runtime, 'SIGTERM');
      runtime.killTimer = setTimeout(() => {
        this.#killTree(runtime).catch((err) => this.#opts.log.error({ job: id, err }, 'kill failed'));
      }, graceMs);
    }
    await runtime.done;
    return entry;
  }

  /** Resolves with the job once it has reached a final state (at once if it has). */
  async ended(id: string): Promise<JobView> {
    const entry = this.#jobs.get(id);
    if (!entry) throw notFound(`no job with id "${id.slice(0, 80)}"`);
    if (entry.record.state === 'pending') await entry.started;
    await entry.runtime?.done;
    return entry;
  }

  /** The stdin of a running job started with `stdin: true`. */
  stdinOf(id: string): Writable {
    const entry = this.get(id) as Entry;
    const stdin = entry.runtime?.child.stdin;
    if (entry.record.state !== 'running') {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `job ${id} is ${entry.record.state}, not running`,
      );
    }
    if (!entry.record.spec.stdin || !stdin) {
      throw new JigletError('JIGLET_E_FAILED_PRECONDITION', `job ${id} was started without stdin`);
    }
    if (stdin.writableEnded || stdin.destroyed) {
      throw new JigletError('JIGLET_E_FAILED_PRECONDITION', `the stdin of job ${id} is already closed`);
    }
    return stdin;
  }

  /** Stops every running job (reason "shutdown") and refuses new ones. */
  async shutdown(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.#closing = true;
    const running = [...this.#jobs.values()].filter((e) => e.runtime && !isFinal(e.record.state));
    await Promise.all(running.map((e) => this.stop(e.record.id, graceMs, 'shutdown').catch(() => e)));
  }

  async #supervise(entry: Entry, rt: Runtime): Promise<void> {
    const { record } = entry;
    const { child, cgroup } = rt;
    const pipesClosed = Promise.all([child.stdout!, child.stderr!].map((s) => streamClosed(s)));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.once('exit', (c, s) => resolve([c, s]));
    });
    try {
      // The leader is gone; whatever it left behind gets SIGTERM and the grace period, like a stop.
      if (cgroup && !(await cgroup.isEmpty())) {
        this.#signalTree(rt, 'SIGTERM');
        if (!(await cgroup.waitEmpty(DEFAULT_GRACE_MS))) await cgroup.killAll();
      }
      const drained = await withDeadline(pipesClosed, PIPE_DRAIN_MS);
      if (!drained) {
        // Only possible without a cgroup: something escaped the process group and holds the pipes.
        this.#signalTree(rt, 'SIGKILL');
        child.stdout!.destroy();
        child.stderr!.destroy();
      }
      record.oomKilled = cgroup ? await cgroup.oomKilled() : false;
      await cgroup?.remove();
    } catch (err) {
      // The job must still reach a final state, or its followers would wait forever.
      record.error ??= `cleaning up after the job failed: ${(err as Error).message}`;
      this.#opts.log.error({ job: record.id, err }, 'job cleanup failed');
    } finally {
      clearTimeout(rt.timeout);
      clearTimeout(rt.killTimer);
    }
    const to: JobStateName = record.stopReason ? 'stopped' : 'exited';
    // The outcome is on the record before the change is announced, so listeners see it.
    if (code !== null) record.exitCode = code;
    if (signal !== null) record.signal = signal;
    record.endedAt = Date.now();
    this.#transition(entry, 'running', to);
    delete record.pid;
    record.outputBytes = entry.log!.length;
    try {
      this.#opts.records.save(record);
    } catch (err) {
      // The in-memory record stays right; a restart would report the job as lost instead.
      this.#opts.log.error({ job: record.id, err }, 'could not save the final job record');
    }
    entry.log!.close();
    delete entry.runtime;
    this.#opts.log.info(
      {
        job: record.id,
        state: to,
        code,
        signal,
        oom: record.oomKilled,
        ms: record.endedAt - (record.startedAt ?? 0),
      },
      'job ended',
    );
  }

  #signalTree(rt: Runtime, sig: NodeJS.Signals): void {
    const pid = rt.child.pid;
    if (pid !== undefined) killQuietly(-pid, sig);
    // Processes that left the group with setsid still sit in the cgroup.
    rt.cgroup
      ?.pids()
      .then((pids) => {
        for (const p of pids) killQuietly(p, sig);
      })
      .catch((err) => this.#opts.log.warn({ err }, 'could not list the job cgroup'));
  }

  async #killTree(rt: Runtime): Promise<void> {
    if (rt.cgroup) await rt.cgroup.killAll();
    else this.#signalTree(rt, 'SIGKILL');
  }

  #fail(entry: Entry, reason: string): void {
    this.#transition(entry, entry.record.state, 'failed');
    entry.record.error = reason;
    entry.record.endedAt = Date.now();
    entry.record.outputBytes = entry.log?.length ?? 0;
    this.#opts.records.save(entry.record);
    entry.log?.close();
    this.#opts.log.warn({ job: entry.record.id, reason }, 'job failed to start');
  }

  #transition(entry: Entry, from: JobStateName, to: JobStateName): void {
    const { record } = entry;
    if (record.state !== from) {
      throw new JigletError(
        'JIGLET_E_ILLEGAL_TRANSITION',
        `job ${record.id} is ${record.state}, expected ${from}`,
      );
    }
    assertTransition(record.id, from, to);
    record.state = to;
    this.#opts.events?.publish({
      kind: 'job',
      at: Date.now(),
      job: record.id,
      owner: record.owner,
      dut: record.spec.dut,
      command: [record.spec.command, ...record.spec.args].join(' '),
      state: to,
      exitCode: record.exitCode,
      signal: record.signal,
      stopReason: record.stopReason,
    });
  }

  #entry(record: JobRecord): Entry {
    const records = this.#opts.records;
    const entry: Entry = {
      record,
      started: Promise.resolve(),
      output() {
        entry.log ??= OutputLog.openExisting(records.dirOf(record.id));
        return entry.log;
      },
      outputBytes() {
        return entry.log && !entry.log.closed ? entry.log.length : (record.outputBytes ?? 0);
      },
    };
    return entry;
  }
}

/** A full disk becomes RESOURCE_EXHAUSTED with a readable message; anything else is passed on. */
function noSpaceAsExhausted(err: unknown, root: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new JigletError('JIGLET_E_RESOURCE_EXHAUSTED', `no space left for a new job in ${root}`);
  }
  return err;
}

/** Size of a job's log, or 0 (logged) when the file is gone or unreadable. */
function logLengthOrZero(dir: string, log: Logger): number {
  try {
    return OutputLog.openExisting(dir).length;
  } catch (err) {
    log.warn({ dir, err }, 'job output log is unreadable');
    return 0;
  }
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    // ESRCH: already gone, which is what we want.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function streamClosed(stream: NodeJS.ReadableStream & { closed?: boolean }): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** True if `p` settled before `ms`; the timer is always cleared. */
async function withDeadline(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), expired]);
  } finally {
    clearTimeout(timer);
  }
}
