/**
 * One DUT at run time, the face the RPCs, the web console and the DUT strategy use. Each concern
 * lives in its own file: the serial capture (dut-capture.ts, started with the agent, restarted if it
 * ever ends), the power actions (dut-power-queue.ts: one at a time, served by its long-lived power
 * driver job, power-driver.ts), flashing (dut-flash.ts), the one writer of its console
 * (dut-console-writer.ts) and what a lease's end does to the DUT (dut-lease-end.ts).
 */

import { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import { describeMatch } from '../../../jig-drivers/src/usb-match.js';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { ImageCache } from '../images/image-cache.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { Lease } from '../leases/lease-manager.js';
import { startSerialCapture } from './dut-capture.js';
import { type ConsoleWriter, ConsoleWriterSlot } from './dut-console-writer.js';
import { DutFlasher, type FlashRequest } from './dut-flash.js';
import { endLeaseOnDut } from './dut-lease-end.js';
import {
  DutPowerQueue,
  type PowerActionDone,
  type PowerOnMark,
  type PowerStatus,
} from './dut-power-queue.js';
import type { DutStateFile, DutStorageState } from './dut-state.js';
import type { JigDriverCommand } from './jig-driver-command.js';
import { AGENT_OWNER, type JobKeeper } from './job-keeper.js';
import { PowerDriver } from './power-driver.js';
import type { PowerActionName } from './power-job.js';
import type { SerialMonitor } from './serial-monitor.js';

export type { ConsoleWriter, PowerStatus };

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
  /** Last power state learned from a driver job. */
  readonly power: PowerStatus;
  readonly storage: DutStorageState;
  #capture: SerialMonitor | undefined;
  #keeper: JobKeeper | undefined;
  #closed = false;
  readonly #opts: DutRuntimeOptions;
  /** Serves the power actions: a long-lived driver job, started on the first one. */
  readonly #powerDriver: PowerDriver;
  readonly #powerQueue: DutPowerQueue;
  readonly #flasher: DutFlasher;
  readonly #writer: ConsoleWriterSlot;

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
    this.#powerQueue = new DutPowerQueue({
      dut,
      driver: this.#powerDriver,
      events: opts.events,
      capture: () => this.#capture,
      // The DUT may leave its shell prompt: exec must look again before it types.
      onSwitch: (action) => this.emit('power', action),
    });
    this.power = this.#powerQueue.status;
    this.#flasher = new DutFlasher({
      ...this.#opts,
      dut,
      storage: this.storage,
      powerOff: (owner, fence) => this.runPower('off', owner, undefined, fence),
    });
    this.#writer = new ConsoleWriterSlot(dut.name);
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
    return this.#writer.current;
  }

  /** Where the serial log stood when the DUT was last switched on (`expect --since-power-on`). */
  get lastPowerOn(): PowerOnMark | undefined {
    return this.#powerQueue.lastPowerOn;
  }

  /** The flash job running now ('starting' while it is being set up), if any. */
  get flashing(): string | undefined {
    return this.#flasher.flashing;
  }

  /** Starts the serial capture, if the DUT has a console. */
  async start(): Promise<void> {
    if (!this.dut.serial) return;
    const { keeper, ready } = startSerialCapture({
      ...this.#opts,
      dut: this.dut,
      onStarted: (monitor) => {
        const previous = this.#capture;
        this.#capture = monitor;
        this.emit('capture', monitor);
        void previous?.close();
      },
    });
    this.#keeper = keeper;
    await ready;
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
  ): Promise<PowerActionDone> {
    return this.#powerQueue.run(action, owner, offTimeMs, fence);
  }

  /**
   * Starts flashing a cached image: powers the DUT off first, marks the medium dirty, and runs the
   * flash job; resolves with the job once it runs (see dut-flash.ts).
   */
  startFlash(opts: FlashRequest): Promise<string> {
    return this.#flasher.start(opts);
  }

  /**
   * Attaches `who` as the one console writer, under `lease` when the DUT is leased (the caller has
   * checked that `who` holds it). Taking over from someone else is an admin's right (a forgotten
   * console must not lock a DUT), and the one taken from is told who took it.
   */
  attachConsole(who: Identity, takeOver: boolean, lease?: string): ConsoleWriter {
    this.requireCapture();
    return this.#writer.attach(
      who,
      takeOver,
      lease,
      (): Writable => this.#opts.supervisor.stdinOf(this.requireCapture().jobId),
    );
  }

  /**
   * A lease on this DUT was granted: a console writer that is not its holder (attached while the
   * DUT was free) is detached, since a leased DUT obeys only its holder.
   */
  leaseGranted(lease: Lease): void {
    this.#writer.detach(
      new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `${lease.holder} leased ${this.dut.name}: its console is the lease holder's now`,
      ),
      (w) => w.who.name !== lease.holder,
    );
  }

  /**
   * A lease on this DUT ended: everything started under it stops, its console writer is detached,
   * and the DUT is put in its safe state (see dut-lease-end.ts). Viewers keep tailing.
   */
  leaseEnded(lease: Lease, reason: string, bound: readonly string[] = []): Promise<void> {
    return endLeaseOnDut(
      {
        dut: this.dut,
        supervisor: this.#opts.supervisor,
        powerDriver: this.#powerDriver,
        writer: this.#writer,
        log: this.#opts.log,
        open: () => !this.#closed,
        safeState: (state) => this.runPower(state, AGENT_OWNER),
      },
      lease,
      reason,
      bound,
    );
  }

  /** Stops restarting the capture; the supervisor's shutdown ends the job itself. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#keeper?.close();
    this.#writer.detach(new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down'));
    this.emit('closed');
    await Promise.all([this.#capture?.close(), this.#powerDriver.close()]);
  }
}
