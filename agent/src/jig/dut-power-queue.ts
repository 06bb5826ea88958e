/**
 * A DUT's power actions, one at a time, in the order asked, served by its long-lived power driver
 * job (power-driver.ts). Keeps the last power state learned and where the serial log stood at the
 * last power-on (`expect --since-power-on`, the boot check of dut-strategy.ts).
 */
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import { DriverFailedError, failedPrecondition } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { PowerDriver } from './power-driver.js';
import type { PowerActionName } from './power-job.js';
import type { SerialMonitor } from './serial-monitor.js';

/** Last power state learned from a driver job. */
export interface PowerStatus {
  state: 'on' | 'off' | 'unknown';
  at: number;
  lastJobId: string;
  lastError: string;
  busy: number;
}

/** Where the serial log stood when the DUT was last switched on. */
export interface PowerOnMark {
  captureJobId: string;
  offset: number;
  at: number;
}

/** What a power action answers. */
export interface PowerActionDone {
  jobId: string;
  state: PowerStatus['state'];
  /** Where the serial log stood when the action started. */
  serialOffset: number;
}

/** What the power queue works with. */
export interface DutPowerQueueOptions {
  dut: DutDescription;
  driver: PowerDriver;
  events: AgentEvents;
  /** The serial capture now, if any (its boundary marks the start of an action). */
  capture: () => SerialMonitor | undefined;
  /** Called as a switching action starts (not for `status`): the DUT may leave its shell prompt. */
  onSwitch: (action: PowerActionName) => void;
}

/** The power actions of one DUT, queued. */
export class DutPowerQueue {
  readonly status: PowerStatus = { state: 'unknown', at: 0, lastJobId: '', lastError: '', busy: 0 };
  /** Where the serial log stood when the DUT was last switched on. */
  lastPowerOn: PowerOnMark | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #o: DutPowerQueueOptions;

  constructor(o: DutPowerQueueOptions) {
    this.#o = o;
  }

  /**
   * Runs a power action after the ones queued before it. `fence` (the caller's lease check) runs
   * again when its turn comes: while it queued, the lease may have ended or gone to someone else.
   */
  run(
    action: PowerActionName,
    owner: string,
    offTimeMs?: number,
    fence?: () => void,
  ): Promise<PowerActionDone> {
    const { dut, events } = this.#o;
    const power = dut.power;
    if (!power) throw failedPrecondition(`DUT ${dut.name} has no power driver in the jig description`);
    this.status.busy++;
    const run = this.#queue.then(async () => {
      // Taken when the action starts, so "what the DUT printed since" excludes the queue wait.
      const capture = this.#o.capture();
      const serialOffset = capture?.boundary ?? 0;
      const captureJobId = capture?.jobId ?? '';
      try {
        fence?.();
      } catch (err) {
        this.status.busy--;
        throw err;
      }
      if (action !== 'status') this.#o.onSwitch(action);
      const startedAt = Date.now();
      try {
        const result = await this.#o.driver.run({ power, action, offTimeMs, owner });
        if ((action === 'on' || action === 'cycle') && result.state === 'on')
          this.lastPowerOn = { captureJobId, offset: serialOffset, at: Date.now() };
        Object.assign(this.status, {
          state: result.state,
          at: Date.now(),
          lastJobId: result.jobId,
          lastError: '',
        });
        events.publish({
          kind: 'power',
          at: this.status.at,
          dut: dut.name,
          action,
          state: result.state,
          job: result.jobId,
          by: owner,
          startedAt,
        });
        return { jobId: result.jobId, state: result.state, serialOffset };
      } catch (err) {
        Object.assign(this.status, { state: 'unknown', at: Date.now(), lastError: (err as Error).message });
        const jobId = err instanceof DriverFailedError ? err.jobId : undefined;
        if (jobId) this.status.lastJobId = jobId;
        // In the run record too: a failed action leaves the power state unknown, and says why.
        events.publish({
          kind: 'power',
          at: this.status.at,
          dut: dut.name,
          action,
          state: 'unknown',
          job: jobId ?? '',
          by: owner,
          startedAt,
          error: (err as Error).message,
        });
        throw err;
      } finally {
        this.status.busy--;
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
