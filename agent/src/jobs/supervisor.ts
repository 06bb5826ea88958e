/**
 * Runs jobs as supervised process trees: each in its own process group and cgroup, output to a
 * durable log, a compare-and-set state machine, stop = SIGTERM → grace → kill the whole cgroup.
 * A job is over when its leader exited, its cgroup is empty and its pipes are drained — Node's
 * 'close' alone is not job exit, because a grandchild can hold the pipes open.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chownSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { failedPrecondition, JigletError, notFound } from '../../../protocol/src/errors.js';
import type { Role } from '../auth/identity.js';
import type { AgentEvents } from '../events/agent-events.js';
import { OutputLog } from '../output/output-log.js';
import { KILL_SETTLE_MS } from './cgroup-v2.js';
import { resolveExecutable } from './command-path.js';
import type { Containment, JobCgroup } from './containment.js';
import { type JobCursor, type JobFilter, JobIndex, type JobIndexEntry } from './job-index.js';
import type { JobRecord, JobRecords, StopReason } from './job-records.js';
import { readJobResults } from './job-results.js';
import type { JobSpecInput } from './job-spec.js';
import { assertTransition, howItEnded, isFinal, type JobStateName } from './job-state.js';
import type { JobCredentials, JobUsers } from './job-users.js';
import { StderrTail } from './stderr-tail.js';
import { describeProcesses, inspectProcesses } from './stuck-processes.js';

/**
 * What a job's folder takes besides its output log until it is measured: the folder, the record,
 * the log (its partial last block), the log's index, an empty work dir and its empty results
 * folder, one 4 KiB block each on ext4. Over rather than under: the size bound must hold before
 * the measurement comes in.
 */
export const JOB_DIR_OVERHEAD_BYTES = 24 * 1024;
/** Finished jobs kept whole in memory after they ended: a client asks about a job right after it ends. */
const RECENT_KEPT = 256;
/** Time between SIGTERM and SIGKILL when the client names none. */
export const DEFAULT_GRACE_MS = 5000;
/** Past grace + the kill's own settle time, how much longer a stop waits for the job to end. */
const STOP_MARGIN_MS = 1000;
/** How long pipes may stay open after the tree is gone (only matters without a cgroup). */
const PIPE_DRAIN_MS = 2000;
/**
 * Joins the cgroups, then execs the job. Runs before the job's first instruction, so every
 * descendant (even one that calls setsid) is contained. Exit 125 = could not join a cgroup.
 */
const SHIM = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
/**
 * The same, for a user's job: it joins its cgroups while still root (the cgroup files are the
 * agent's), then gives up root for the job's own uid through setpriv, which execs in place. A user's
 * job gets the usual umask back; the agent's own 077 is for its state files.
 */
const USER_SHIM =
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; umask 022; exec "$@"';
/** The folder in a user's job's working directory that $JIGLET_RESULTS names. */
const RESULTS_DIR = 'results';
/** Where users' jobs get their working directories, under the state directory (see README). */
export const WORK_DIR = 'work';

/** Supervisor settings. */
export interface SupervisorOptions {
  records: JobRecords;
  containment: Containment;
  log: Logger;
  /** Variables every job gets (PATH, LANG); a job's own env is added on top. */
  baseEnv: Record<string, string>;
  /** Told of every state change. */
  events?: AgentEvents;
  /** Which uid a user's job runs as; without it every job runs as the agent. */
  users?: JobUsers;
  /** Folder of users' working directories (one per job, owned by the job's uid). */
  workRoot?: string;
  /**
   * Awaited before a user's job on a DUT is spawned: device grants of a lease claimed a moment
   * ago must be on the nodes before the job opens them.
   */
  beforeUserJob?: (dut: string) => Promise<void>;
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

/** The rights a job's processes get on the local endpoint, besides its owner and DUT. */
export interface LocalGrant {
  /** The owner's role when the job was started (a record stores only the owner's name). */
  role: Role;
  /** The lease the job was started under; none = the job may not act on any DUT. */
  lease?: string;
}

/** A running job whose processes may call the local endpoint. */
export interface LocalJob {
  readonly id: string;
  readonly owner: string;
  /** '' when the job names no DUT. */
  readonly dut: string;
  readonly grant: LocalGrant;
  /** Pids of the job's processes now (its cgroup; its process group without containment). */
  pids(): Promise<number[]>;
}

/** A job as the rest of the agent sees it. */
export interface JobView {
  readonly record: Readonly<JobRecord>;
  /** The job's output log (opened on demand for jobs of earlier agent runs). */
  output(): OutputLog;
  /** Bytes of output so far. */
  outputBytes(): number;
  /** Bytes of output held on disk: less than outputBytes() once a log's head was dropped. */
  storedBytes(): number;
}

interface Runtime {
  child: ChildProcess;
  cgroup: JobCgroup | null;
  done: Promise<void>;
  timeout?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  /** When a stop stops waiting for the job to end (set by the first stop). */
  giveUpAt?: number;
  /** The last lines of stderr, kept for the record of a job that fails. */
  stderrTail: StderrTail;
  /** A user's job's $JIGLET_RESULTS, read when it ends; uid = who must own the files. */
  results?: { dir: string; uid?: number };
}

interface Entry extends JobView {
  record: JobRecord;
  log?: OutputLog;
  runtime?: Runtime;
  /** Settles once start() has finished spawning (or failing), so a racing stop can wait. */
  started: Promise<void>;
  /** See StartOptions.local. */
  local?: LocalGrant;
}

/**
 * Owns every job process, cgroup, timer and output log of the agent. Memory holds the live jobs,
 * the last few finished ones and a compact index of the rest (issue 11); a finished job's full
 * record is read from its folder when asked for.
 */
export class Supervisor {
  /** Jobs that are not over yet. */
  readonly #jobs = new Map<string, Entry>();
  /** Jobs that ended lately, newest last (bounded by RECENT_KEPT). */
  readonly #recent = new Map<string, Entry>();
  readonly #index = new JobIndex();
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
      // Every recovered job is over: only its index entry stays in memory.
      this.#index.add(indexEntryOf(record));
    }
    log.info({ jobs: loaded.length, bytes: this.#index.bytes }, 'job records loaded');
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
    const entry = this.#entry(record);
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
    this.#jobs.set(id, entry);
    this.#index.add(indexEntryOf(record));
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
      this.#fail(entry, `could not start ${record.spec.command}: ${(err as Error).message}`);
    } catch (e) {
      log.error({ job: record.id, err: e }, 'could not record the failed start');
    }
  }

  async #spawn(entry: Entry, dir: string, privileged: boolean): Promise<void> {
    const { containment, log, baseEnv, records } = this.#opts;
    const { record } = entry;
    const { id, spec } = record;

    const env: Record<string, string> = {
      ...baseEnv,
      ...spec.env,
      JIGLET_JOB_ID: id,
      ...(spec.dut ? { JIGLET_DUT: spec.dut } : {}),
    };
    let creds: JobCredentials | undefined;
    let work: string;
    let dropTo: string[] = [];
    let results: Runtime['results'];
    try {
      creds = privileged ? undefined : this.#opts.users?.credentialsOf(record.owner);
      if (creds) dropTo = this.#setprivArgs(creds);
      work = creds ? this.#userWorkDir(id, creds) : join(dir, 'work');
      if (!creds) mkdirSync(work);
      if (!privileged) {
        // Every user's job may report test cases (JUnit XML) here; read when it ends.
        const resultsDir = join(work, RESULTS_DIR);
        mkdirSync(resultsDir, { mode: 0o700 });
        if (creds) chownSync(resultsDir, creds.uid, creds.gid);
        env.JIGLET_RESULTS = resultsDir;
        results = { dir: resultsDir, uid: creds?.uid };
      }
    } catch (err) {
      this.#fail(entry, `could not prepare the job's user and working directory: ${(err as Error).message}`);
      return;
    }
    if (creds) {
      if (spec.dut !== '') await this.#opts.beforeUserJob?.(spec.dut);
      record.runAs = creds;
      // The agent's HOME is not the job's: tools that write to ~ get the job's own folder.
      env.HOME = work;
    }
    const cwd = spec.cwd === '' ? work : spec.cwd;
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
      [
        '-c',
        creds ? USER_SHIM : SHIM,
        'jiglet-shim',
        ...(cgroup?.procsFiles ?? []),
        '--',
        ...dropTo,
        executable.path,
        ...spec.args,
      ],
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
    const stderrTail = new StderrTail();
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
    child.stderr!.on('data', (chunk: Buffer) => {
      append('stderr', chunk);
      stderrTail.push(chunk);
    });
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
    const runtime: Runtime = { child, cgroup, done: Promise.resolve(), stderrTail, results };
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

  /** Creates a user's job folder, owned by the job's uid and closed to everyone else. */
  #userWorkDir(id: string, creds: JobCredentials): string {
    const root = this.#opts.workRoot;
    if (!root) throw new Error('the agent has no folder for job working directories');
    const work = join(root, id);
    mkdirSync(work, { mode: 0o700 });
    chownSync(work, creds.uid, creds.gid);
    return work;
  }

  /**
   * setpriv drops every group, and no-new-privs keeps a setuid binary (su, sudo) from taking
   * root back. It execs in place, so the job's pid stays the one the agent supervises.
   */
  #setprivArgs(creds: JobCredentials): string[] {
    const setpriv = resolveExecutable('setpriv', this.#opts.baseEnv.PATH ?? '', '/');
    if (!setpriv.ok)
      throw new JigletError('JIGLET_E_INTERNAL', 'setpriv (util-linux) is not installed on the jig host');
    return [
      setpriv.path,
      `--reuid=${creds.uid}`,
      `--regid=${creds.gid}`,
      '--clear-groups',
      '--no-new-privs',
      '--',
    ];
  }

  /** One job (a finished one is read from disk); throws JIGLET_E_NOT_FOUND, saying so if it was pruned. */
  get(id: string): JobView {
    return this.#find(id);
  }

  /**
   * The jobs that are not over yet, newest first. Finished jobs are not listed here (they live
   * in the index and on disk): use `page()` or `records()` for those.
   */
  list(): JobView[] {
    return [...this.#jobs.values()].sort((a, b) => b.record.createdAt - a.record.createdAt);
  }

  /**
   * The running jobs that hold a local-endpoint grant. A job that has ended is never listed, so
   * a connection is only ever matched to a job whose processes are still supervised.
   */
  localJobs(): LocalJob[] {
    const out: LocalJob[] = [];
    for (const entry of this.#jobs.values()) {
      const { record, runtime, local } = entry;
      if (!local || !runtime || record.state !== 'running') continue;
      out.push({
        id: record.id,
        owner: record.owner,
        dut: record.spec.dut,
        grant: local,
        pids: async () => {
          if (runtime.cgroup && this.#opts.containment.mode !== 'none') return runtime.cgroup.pids();
          const leader = runtime.child.pid;
          return leader === undefined ? [] : processGroup(leader);
        },
      });
    }
    return out;
  }

  /** The local-endpoint grant of a job that is running now, if it has one. */
  localGrantOf(id: string): LocalGrant | undefined {
    const entry = this.#jobs.get(id);
    return entry?.record.state === 'running' ? entry.local : undefined;
  }

  /** The compact index of every job kept (live and finished); read-only use. */
  get index(): Pick<JobIndex, 'size' | 'bytes' | 'get' | 'entries' | 'countByState'> {
    return this.#index;
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
    const { jobs, more } = this.#index.page(filter, limit, cursor);
    const end = jobs.at(-1);
    const last = end && { createdAt: end.createdAt, id: end.id };
    const views: JobView[] = [];
    for (const e of jobs) {
      try {
        views.push(this.#find(e.id));
      } catch (err) {
        // Pruned or unreadable since the index was read: a listing skips it rather than failing.
        this.#opts.log.debug({ job: e.id, err }, 'job vanished while listing');
      }
    }
    return { jobs: views, more, last };
  }

  /** Full records of the jobs whose index entry passes `match`, oldest first. */
  records(match: (e: Readonly<JobIndexEntry>) => boolean): JobRecord[] {
    const out: JobRecord[] = [];
    for (const e of this.#index.entries()) {
      if (!match(e)) continue;
      try {
        out.push(this.#find(e.id).record);
      } catch (err) {
        this.#opts.log.debug({ job: e.id, err }, 'job vanished while reading records');
      }
    }
    return out;
  }

  /**
   * Takes finished jobs out of the index (their ids are remembered as pruned) and returns those
   * taken; the caller deletes their folders. A job that is not over is never taken.
   */
  forget(ids: readonly string[]): JobIndexEntry[] {
    const taken: JobIndexEntry[] = [];
    for (const id of ids) {
      const e = this.#index.get(id);
      if (!e || this.#jobs.has(id) || !isFinal(e.state)) continue;
      taken.push({ ...e });
      this.#recent.delete(id);
    }
    this.#index.removeMany(
      taken.map((e) => e.id),
      true,
    );
    return taken;
  }

  /** Refreshes the sizes of live jobs in the index (their logs grow). */
  refreshLiveBytes(): void {
    for (const entry of this.#jobs.values()) {
      this.#index.setBytes(entry.record.id, entry.storedBytes() + JOB_DIR_OVERHEAD_BYTES, false);
    }
  }

  /** Records a finished job's measured folder size, in the index and in its record. */
  setDiskBytes(id: string, bytes: number): void {
    const e = this.#index.get(id);
    if (!e || !isFinal(e.state) || this.#jobs.has(id)) return;
    this.#index.setBytes(id, bytes, true);
    const record = this.#recent.get(id)?.record ?? this.#opts.records.load(id);
    record.diskBytes = bytes;
    this.#opts.records.save(record);
  }

  /**
   * Stops a running job: SIGTERM to the whole tree, then after `graceMs` a kill of its cgroup.
   * Resolves with the final record. Stopping a job that is already over is an illegal transition that says how it ended.
   */
  async stop(id: string, graceMs: number, reason: StopReason): Promise<JobView> {
    const entry = this.#find(id);
    if (entry.record.state === 'pending') await entry.started;
    const { record, runtime } = entry;
    if (isFinal(record.state)) {
      const at = record.endedAt === undefined ? '' : ` at ${new Date(record.endedAt).toISOString()}`;
      throw new JigletError(
        'JIGLET_E_ILLEGAL_TRANSITION',
        `job ${id} already ended (${howItEnded(record)}${at})`,
      );
    }
    if (!runtime) {
      assertTransition(id, record.state, 'stopped');
      return entry;
    }
    if (record.stopReason === undefined) {
      record.stopReason = reason;
      runtime.giveUpAt = Date.now() + graceMs + KILL_SETTLE_MS + STOP_MARGIN_MS;
      this.#signalTree(runtime, 'SIGTERM');
      runtime.killTimer = setTimeout(() => {
        this.#killTree(runtime).catch((err) => this.#opts.log.error({ job: id, err }, 'kill failed'));
      }, graceMs);
    }
    // Bounded: a process in uninterruptible sleep outlives SIGKILL, and neither a StopJob caller
    // nor the agent's shutdown may wait on it forever. The job stays running until it does end.
    const wait = Math.max(STOP_MARGIN_MS, (runtime.giveUpAt ?? 0) - Date.now());
    if (!(await withDeadline(runtime.done, wait))) throw await this.#stuck(entry, runtime);
    return entry;
  }

  /** The error for a job that outlived its stop's deadline, naming the processes left and their state. */
  async #stuck(entry: Entry, runtime: Runtime): Promise<JigletError> {
    const { id } = entry.record;
    let pids: number[] = [];
    try {
      pids = runtime.cgroup ? await runtime.cgroup.pids() : [];
    } catch {
      // The description below falls back on the leader.
    }
    if (pids.length === 0 && runtime.child.pid !== undefined) pids = [runtime.child.pid];
    const procs = await inspectProcesses(pids);
    this.#opts.log.error({ job: id, processes: procs }, 'job did not end after SIGKILL');
    return new JigletError(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `job ${id} did not end after SIGKILL: ${describeProcesses(procs) || `pids ${pids.join(', ')}`}. ` +
        'A process in uninterruptible sleep (D) dies only once its I/O returns (a hung device or ' +
        'NFS server); the job stays running until then, and its end is recorded when it comes',
    );
  }

  /** Resolves with the job once it has reached a final state (at once if it has). */
  async ended(id: string): Promise<JobView> {
    const entry = this.#find(id);
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
    // Pending ones too: a start already under way when the shutdown began spawns after it, and
    // would leave a process and an open log behind an agent that has stopped.
    const live = [...this.#jobs.values()].filter((e) => !isFinal(e.record.state));
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
    // Before the state changes: whoever hears of the end finds the cases on the record.
    await this.#readResults(record, rt);
    const to: JobStateName = record.stopReason ? 'stopped' : 'exited';
    // The outcome is on the record before the change is announced, so listeners see it.
    if (code !== null) record.exitCode = code;
    if (signal !== null) record.signal = signal;
    if (to !== 'exited' || code !== 0) {
      const tail = rt.stderrTail.text();
      if (tail) record.stderrTail = tail;
    }
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
    this.#retire(entry);
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

  /** Puts the job's test cases (and what could not be read) on its record; never throws. */
  async #readResults(record: JobRecord, rt: Runtime): Promise<void> {
    if (!rt.results) return;
    try {
      const { cases, error } = await readJobResults(rt.results.dir, { uid: rt.results.uid });
      if (cases.length > 0) record.testCases = cases;
      if (error) record.resultsError = error;
    } catch (err) {
      record.resultsError = `the agent could not read $JIGLET_RESULTS: ${(err as Error).message}`;
      this.#opts.log.error({ job: record.id, err }, 'reading test results failed');
    }
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
    entry.log?.close();
    try {
      this.#opts.records.save(entry.record);
    } catch (err) {
      this.#opts.log.error(
        { job: entry.record.id, err },
        'could not save the record of a job that failed to start',
      );
    } finally {
      this.#retire(entry);
    }
    this.#opts.log.warn({ job: entry.record.id, reason }, 'job failed to start');
  }

  /** A job is over: it leaves the live set for the recent ones, and its index entry is final. */
  #retire(entry: Entry): void {
    const { record } = entry;
    this.#jobs.delete(record.id);
    const indexed = this.#index.get(record.id);
    if (indexed) {
      // In place: re-adding would cost a pass over the whole index per job.
      indexed.state = record.state;
      indexed.endedAt = record.endedAt;
      this.#index.setBytes(record.id, indexEntryOf(record).bytes, false);
    } else this.#index.add(indexEntryOf(record));
    this.#recent.set(record.id, entry);
    if (this.#recent.size > RECENT_KEPT) {
      const oldest = this.#recent.keys().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
  }

  /** A live or recent job from memory, else a finished one from disk; NOT_FOUND says why not. */
  #find(id: string): Entry {
    const inMemory = this.#jobs.get(id) ?? this.#recent.get(id);
    if (inMemory) return inMemory;
    const shown = id.slice(0, 80);
    if (!this.#index.get(id)) {
      throw notFound(
        this.#index.wasPruned(id)
          ? `job ${shown} was pruned by the retention policy: its record and output are deleted`
          : `no job with id "${shown}": it never existed, or it ended long ago and was pruned by the retention policy`,
      );
    }
    try {
      return this.#entry(this.#opts.records.load(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw notFound(`job ${shown} was pruned by the retention policy: its record and output are deleted`);
      }
      this.#opts.log.warn({ job: id, err }, 'job record unreadable');
      throw notFound(`the record of job ${shown} cannot be read: ${(err as Error).message}`);
    }
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
    const indexed = this.#index.get(record.id);
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
      storedBytes() {
        return entry.log && !entry.log.closed ? entry.log.storedBytes : (record.outputBytes ?? 0);
      },
    };
    return entry;
  }
}

/** The index entry of a job; its size is an estimate until retention measures its folder. */
function indexEntryOf(record: JobRecord): JobIndexEntry {
  const measured = record.diskBytes !== undefined;
  return {
    id: record.id,
    owner: record.owner,
    state: record.state,
    dut: record.spec.dut ?? '',
    createdAt: record.createdAt,
    endedAt: record.endedAt,
    bytes: record.diskBytes ?? (record.outputBytes ?? 0) + JOB_DIR_OVERHEAD_BYTES,
    measured,
  };
}

/** A full disk becomes RESOURCE_EXHAUSTED with a readable message; anything else is passed on. */
function noSpaceAsExhausted(err: unknown, root: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new JigletError('JIGLET_E_RESOURCE_EXHAUSTED', `no space left for a new job in ${root}`);
  }
  return err;
}

/**
 * The client's working directory must exist and be a directory on this host; otherwise the spawn
 * would fail with an error that names /bin/sh (ENOENT) or is thrown outright (ENOTDIR).
 */
function checkWorkingDir(cwd: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(cwd).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw failedPrecondition(`working directory ${cwd} does not exist on the jig host`);
    throw failedPrecondition(`working directory ${cwd} cannot be used on the jig host (${code})`);
  }
  if (!isDir) throw failedPrecondition(`working directory ${cwd} is not a directory on the jig host`);
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

/**
 * Without containment a job is its process group (it was spawned detached, so its leader's pid is
 * the group id): the processes whose /proc/PID/stat names that group. One that left the group
 * (setsid) is not found, which only ever refuses it.
 */
async function processGroup(leader: number): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'latin1');
      // Fields after the parenthesised command name: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === leader) pids.push(Number(name));
    } catch {
      // The process ended while we looked: not one of the job's any more.
    }
  }
  return pids;
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
