/**
 * One DUT at run time: its serial capture job (started with the agent, restarted if it ever
 * ends), its power actions (one at a time, served by its long-lived power driver job:
 * power-driver.ts), and the one writer of its console.
 */

import { EventEmitter, once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import { describeMatch } from '../../../jig-drivers/src/usb-match.js';
import {
  DriverFailedError,
  failedPrecondition,
  JigletError,
  permissionDenied,
} from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import { can } from '../auth/permissions.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { ImageCache } from '../images/image-cache.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import { isFinal } from '../jobs/job-state.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import { LEASE_STOP_GRACE_MS } from '../leases/lease-jobs.js';
import type { Lease } from '../leases/lease-manager.js';
import type { DutStateFile, DutStorageState } from './dut-state.js';
import { flashJobSpec } from './flash-job.js';
import type { JigDriverCommand } from './jig-driver-command.js';
import { AGENT_OWNER, JobKeeper } from './job-keeper.js';
import { PowerDriver } from './power-driver.js';
import type { PowerActionName } from './power-job.js';
import { boundSerialLog } from './serial-log-bound.js';
import { SerialMonitor } from './serial-monitor.js';

/** Last power state learned from a driver job. */
export interface PowerStatus {
  state: 'on' | 'off' | 'unknown';
  at: number;
  lastJobId: string;
  lastError: string;
  busy: number;
}

/** The attached console writer. */
export interface ConsoleWriter {
  readonly who: Identity;
  readonly since: number;
  /** The lease it was attached under (undefined on a DUT that was not leased): its end detaches it. */
  readonly lease: string | undefined;
  /** Aborted when an admin takes the console over or its lease ends; the reason says why. */
  readonly signal: AbortSignal;
  /** The capture job's stdin (changes if the capture restarts). */
  input(): Writable;
  release(): void;
}

/** Longest the agent waits at start for a capture's first word about its port. */
const CAPTURE_READY_MS = 10_000;

/** What a DUT runtime works with. */
export interface DutRuntimeOptions {
  supervisor: Supervisor;
  jigDriver: JigDriverCommand;
  images: ImageCache;
  stateFile: DutStateFile;
  log: Logger;
  events: AgentEvents;
  /** The agent's state directory (driver config files go there). */
  stateDir: string;
  /** Most bytes the live serial log keeps (see serial-log-bound.ts). */
  serialLogMaxBytes: number;
}

/**
 * Emits 'capture' (SerialMonitor) when a capture job starts, 'power' (action) when a power
 * action starts, and 'closed' when the DUT runtime ends, so followers move to the new capture or
 * stop, and exec knows the shell prompt it saw may be gone.
 */
export class DutRuntime extends EventEmitter {
  readonly dut: DutDescription;
  readonly power: PowerStatus = { state: 'unknown', at: 0, lastJobId: '', lastError: '', busy: 0 };
  #capture: SerialMonitor | undefined;
  #writer: (ConsoleWriter & { controller: AbortController }) | undefined;
  #powerQueue: Promise<unknown> = Promise.resolve();
  #keeper: JobKeeper | undefined;
  #closed = false;
  readonly #opts: DutRuntimeOptions;
  readonly storage: DutStorageState;
  /** Serves the power actions: a long-lived driver job, started on the first one. */
  readonly #powerDriver: PowerDriver;
  /** Where the serial log stood when the DUT was last switched on (`expect --since-power-on`). */
  lastPowerOn: { captureJobId: string; offset: number; at: number } | undefined;
  /** The flash job running now ('starting' while it is being set up), if any. */
  flashing: string | undefined;

  constructor(dut: DutDescription, opts: DutRuntimeOptions) {
    super();
    this.setMaxListeners(0); // one per follower, each removed when it ends
    this.dut = dut;
    this.#opts = { ...opts, log: opts.log.child({ dut: dut.name }) };
    this.storage = opts.stateFile.load();
    this.#powerDriver = new PowerDriver({
      supervisor: opts.supervisor,
      jigDriver: opts.jigDriver,
      dut: dut.name,
      stateDir: opts.stateDir,
      log: this.#opts.log,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The capture of the serial log now (undefined without a serial resource or before start). */
  get capture(): SerialMonitor | undefined {
    return this.#capture;
  }

  /** The configured serial source for people: a path, or the USB match. */
  get serialSource(): string {
    const serial = this.dut.serial;
    if (!serial) return '';
    return serial.path ?? `usb ${describeMatch(serial.usb ?? {}).replace(/^tty /, '')}`;
  }

  /** The console writer attached now, if any. */
  get writer(): ConsoleWriter | undefined {
    return this.#writer;
  }

  /** Starts the serial capture, if the DUT has a console. */
  async start(): Promise<void> {
    if (this.dut.serial) await this.#startCapture();
  }

  /** Current capture, or FAILED_PRECONDITION saying why there is none. */
  requireCapture(): SerialMonitor {
    if (!this.dut.serial)
      throw failedPrecondition(`DUT ${this.dut.name} has no serial console in the jig description`);
    if (!this.#capture)
      throw new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `the serial capture of ${this.dut.name} is restarting; try again`,
      );
    return this.#capture;
  }

  /**
   * Runs a power action after the ones queued before it. `fence` (the caller's lease check) runs
   * again when its turn comes: while it queued, the lease may have ended or gone to someone else.
   */
  runPower(
    action: PowerActionName,
    owner: string,
    offTimeMs?: number,
    fence?: () => void,
  ): Promise<{ jobId: string; state: PowerStatus['state']; serialOffset: number }> {
    const power = this.dut.power;
    if (!power) throw failedPrecondition(`DUT ${this.dut.name} has no power driver in the jig description`);
    this.power.busy++;
    const run = this.#powerQueue.then(async () => {
      // Taken when the action starts, so "what the DUT printed since" excludes the queue wait.
      const serialOffset = this.#capture?.boundary ?? 0;
      const captureJobId = this.#capture?.jobId ?? '';
      try {
        fence?.();
      } catch (err) {
        this.power.busy--;
        throw err;
      }
      // The DUT may leave its shell prompt: exec must look again before it types.
      if (action !== 'status') this.emit('power', action);
      const startedAt = Date.now();
      try {
        const result = await this.#powerDriver.run({ power, action, offTimeMs, owner });
        if ((action === 'on' || action === 'cycle') && result.state === 'on')
          this.lastPowerOn = { captureJobId, offset: serialOffset, at: Date.now() };
        Object.assign(this.power, {
          state: result.state,
          at: Date.now(),
          lastJobId: result.jobId,
          lastError: '',
        });
        this.#opts.events.publish({
          kind: 'power',
          at: this.power.at,
          dut: this.dut.name,
          action,
          state: result.state,
          job: result.jobId,
          by: owner,
          startedAt,
        });
        return { jobId: result.jobId, state: result.state, serialOffset };
      } catch (err) {
        Object.assign(this.power, { state: 'unknown', at: Date.now(), lastError: (err as Error).message });
        const jobId = err instanceof DriverFailedError ? err.jobId : undefined;
        if (jobId) this.power.lastJobId = jobId;
        // In the run record too: a failed action leaves the power state unknown, and says why.
        this.#opts.events.publish({
          kind: 'power',
          at: this.power.at,
          dut: this.dut.name,
          action,
          state: 'unknown',
          job: jobId ?? '',
          by: owner,
          startedAt,
          error: (err as Error).message,
        });
        throw err;
      } finally {
        this.power.busy--;
      }
    });
    this.#powerQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Starts flashing a cached image: powers the DUT off first (a medium switched away under a
   * running DUT corrupts both), marks the medium dirty, and runs the flash job; resolves with the
   * job once it runs. The image stays pinned in the cache until the job ends.
   */
  async startFlash(opts: {
    imageSha256: string;
    bmapSha256?: string;
    verify: boolean;
    owner: string;
    /** The caller's lease check, run again before the power-off (see runPower). */
    fence?: () => void;
  }): Promise<string> {
    const { storage } = this.dut;
    if (!storage) throw failedPrecondition(`DUT ${this.dut.name} has no storage mux in the jig description`);
    if (this.flashing)
      throw failedPrecondition(`a flash of ${this.dut.name} is running (job ${this.flashing})`);
    const { images, supervisor, jigDriver, stateFile, log } = this.#opts;
    const releases = [images.pin(opts.imageSha256)];
    try {
      if (opts.bmapSha256) releases.push(images.pin(opts.bmapSha256));
      this.flashing = 'starting';
      if (this.dut.power) await this.runPower('off', opts.owner, undefined, opts.fence);
      this.storage.dirty = true;
      stateFile.save(this.storage);
      const job = await supervisor.start(
        flashJobSpec({
          jigDriver,
          dut: this.dut.name,
          storage,
          imagePath: images.pathOf(opts.imageSha256),
          bmapPath: opts.bmapSha256 ? images.pathOf(opts.bmapSha256) : undefined,
          verify: opts.verify,
          stateDir: this.#opts.stateDir,
        }),
        opts.owner,
        // The flasher writes a block device and switches the mux: an agent job.
        { privileged: true, title: `flash ${imageName(images, opts.imageSha256)}` },
      );
      const id = job.record.id;
      this.flashing = id;
      const flashEvent = (phase: 'started' | 'done' | 'failed'): void =>
        this.#opts.events.publish({
          kind: 'flash',
          at: Date.now(),
          dut: this.dut.name,
          job: id,
          phase,
          image: opts.imageSha256,
        });
      flashEvent('started');
      this.storage.lastJobId = id;
      stateFile.save(this.storage);
      // Nobody awaits this: whatever fails in it is logged here, never an unhandled rejection.
      supervisor
        .ended(id)
        .then((ended) => {
          for (const release of releases) release();
          this.flashing = undefined;
          if (ended.record.state === 'exited' && ended.record.exitCode === 0) {
            Object.assign(this.storage, {
              dirty: false,
              lastImageSha256: opts.imageSha256,
              lastFlashedAt: Date.now(),
            });
            this.#saveStorage('the flash completed');
            log.info({ job: id, image: opts.imageSha256 }, 'flash complete');
            flashEvent('done');
          } else {
            flashEvent('failed');
            log.warn(
              { job: id, state: ended.record.state, exitCode: ended.record.exitCode },
              'flash failed; the medium is dirty',
            );
          }
        })
        .catch((err: unknown) => log.error({ err, job: id }, 'could not finish the flash record'));
      return id;
    } catch (err) {
      for (const release of releases) release();
      this.flashing = undefined;
      throw err;
    }
  }

  /**
   * Attaches `who` as the one console writer, under `lease` when the DUT is leased (the caller has
   * checked that `who` holds it). Taking over from someone else is an admin's right (a forgotten
   * console must not lock a DUT), and the one taken from is told who took it.
   */
  attachConsole(who: Identity, takeOver: boolean, lease?: string): ConsoleWriter {
    this.requireCapture();
    const held = this.#writer;
    if (held) {
      if (!takeOver) {
        throw failedPrecondition(
          `the console of ${this.dut.name} is in use by ${held.who.name} since ${new Date(held.since).toISOString()}; read it with "jigctl serial tail -f --dut ${this.dut.name}"${can(who.role, 'console.takeover') ? ', or take it over with --take-over' : ''}`,
        );
      }
      if (!can(who.role, 'console.takeover')) {
        throw permissionDenied(
          `${who.name} (role ${who.role}) may not take over the console of ${this.dut.name}`,
        );
      }
      held.controller.abort(
        new JigletError('JIGLET_E_TAKEN_OVER', `${who.name} took over the console of ${this.dut.name}`),
      );
      this.#writer = undefined;
    }
    const controller = new AbortController();
    const writer = {
      who,
      lease,
      since: Date.now(),
      signal: controller.signal,
      controller,
      input: (): Writable => this.#opts.supervisor.stdinOf(this.requireCapture().jobId),
      release: (): void => {
        if (this.#writer === writer) this.#writer = undefined;
      },
    };
    this.#writer = writer;
    return writer;
  }

  /**
   * A lease on this DUT was granted: a console writer that is not its holder (attached while the
   * DUT was free) is detached, since a leased DUT obeys only its holder.
   */
  leaseGranted(lease: Lease): void {
    const writer = this.#writer;
    if (!writer || writer.who.name === lease.holder) return;
    writer.controller.abort(
      new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `${lease.holder} leased ${this.dut.name}: its console is the lease holder's now`,
      ),
    );
    this.#writer = undefined;
  }

  /**
   * A lease on this DUT ended: everything started under it stops — the jobs bound to it (whoever
   * started them) and its holder's jobs on the DUT — its console writer is detached, and the DUT
   * is put in its safe state. Viewers keep tailing.
   */
  async leaseEnded(lease: Lease, reason: string, bound: readonly string[] = []): Promise<void> {
    const { supervisor, log } = this.#opts;
    const { holder } = lease;
    const why = `the lease of ${holder} on ${this.dut.name} ended (${reason})`;
    const writer = this.#writer;
    if (writer && (writer.lease === lease.id || writer.who.name === holder)) {
      writer.controller.abort(new JigletError('JIGLET_E_FAILED_PRECONDITION', why));
      this.#writer = undefined;
    }
    const boundIds = new Set(bound);
    const running = supervisor
      .list()
      .filter(
        (j) =>
          !isFinal(j.record.state) &&
          (boundIds.has(j.record.id) || (j.record.spec.dut === this.dut.name && j.record.owner === holder)),
      );
    await Promise.all([
      ...running.map((j) =>
        supervisor
          .stop(j.record.id, LEASE_STOP_GRACE_MS, 'lease')
          .catch((err) => log.warn({ err, job: j.record.id }, 'could not stop a leased job')),
      ),
      // A power action of the holder runs in the DUT's (agent-owned) power driver: stopped too.
      this.#powerDriver
        .stopActionOf(holder, 'lease')
        .catch((err) => log.warn({ err }, 'could not stop a leased power action')),
    ]);
    const safe = this.dut.safeState.power;
    if (this.dut.power && safe !== 'unchanged' && !this.#closed) {
      try {
        await this.runPower(safe, AGENT_OWNER);
      } catch (err) {
        log.error({ err }, `could not put ${this.dut.name} in its safe state (power ${safe})`);
      }
    }
    log.info({ holder, reason, stopped: running.length }, why);
  }

  /**
   * Saves the storage state after a flash ended. The flash itself is over, so a save that fails
   * (a full disk) is logged and the state in memory stays right; a restart would then see the
   * medium as dirty, which is the safe side.
   */
  #saveStorage(why: string): void {
    try {
      this.#opts.stateFile.save(this.storage);
    } catch (err) {
      this.#opts.log.error({ err }, `could not save the storage state of ${this.dut.name} after ${why}`);
    }
  }

  /** Stops restarting the capture; the supervisor's shutdown ends the job itself. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#keeper?.close();
    this.#writer?.controller.abort(new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down'));
    this.emit('closed');
    await Promise.all([this.#capture?.close(), this.#powerDriver.close()]);
  }

  async #startCapture(): Promise<void> {
    const serial = this.dut.serial!;
    const { supervisor, jigDriver, log } = this.#opts;
    const source = serial.path ? ['--path', serial.path] : ['--usb', JSON.stringify(serial.usb)];
    const spec: JobSpecInput = {
      command: jigDriver.command,
      args: [
        ...(jigDriver.captureArgs ?? []),
        ...jigDriver.args,
        'serial',
        ...source,
        '--baud',
        String(serial.baud),
      ],
      env: {},
      cwd: '',
      dut: this.dut.name,
      limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
      timeoutMs: 0,
      stdin: true,
    };
    const keeper = new JobKeeper(`serial capture of ${this.dut.name}`, spec, supervisor, log);
    keeper.on('started', (job: JobView) => {
      const monitor = new SerialMonitor(job.record.id, job.output(), (err) =>
        log.error({ err, job: job.record.id }, 'the serial capture log is unreadable'),
      );
      boundSerialLog(monitor, this.#opts.serialLogMaxBytes, log);
      const previous = this.#capture;
      this.#capture = monitor;
      this.emit('capture', monitor);
      void previous?.close();
    });
    this.#keeper = keeper;
    await keeper.start();
    // Serve only once the capture has said where the port stands (open, or absent): a client that
    // powers a DUT on right after the agent started must not lose the boot log to the capture's
    // own start-up. Bounded: a capture that says nothing is reported and the agent goes on.
    const monitor = this.#capture;
    if (monitor && monitor.state === 'starting') {
      try {
        await once(monitor, 'record', { signal: AbortSignal.timeout(CAPTURE_READY_MS) });
      } catch {
        log.warn({ job: monitor.jobId }, `the serial capture said nothing within ${CAPTURE_READY_MS} ms`);
      }
    }
  }
}

/** An image as people know it: the file name it was uploaded under, else the start of its hash. */
function imageName(images: ImageCache, sha256: string): string {
  try {
    return images.get(sha256).name || `image ${sha256.slice(0, 12)}`;
  } catch {
    // Pinned a moment ago, so it is there; a name is not worth failing a flash for.
    return `image ${sha256.slice(0, 12)}`;
  }
}
