/**
 * A DUT's power actions through one long-lived `jig-driver power-serve` job (issue 13): started on
 * the DUT's first power action as an agent job ("power driver for vdut-a"), kept while the agent
 * runs, started afresh when it ended, when the DUT's power config changed, or when an action
 * missed its deadline (the job, its whole cgroup, is stopped then). Each action is one JSON request
 * on the job's stdin and one JSON answer on its stdout; its steps land in the job's log.
 *
 * What "power is a job" still gives: the caller is one action at a time per DUT (DutRuntime's
 * queue), each action has the same deadline as a per-action job had and fails with the same words,
 * its steps are in a job log (the driver job's), and the run journal records it (a power event
 * with the caller as `by` and the driver job as `job`).
 *
 * Drivers that must not hold a device open between actions (usb-hid-relay keeps a libusb handle)
 * still run one `jig-driver power` job per action (power-job.ts).
 */

import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import type { PowerConfig } from '../../../jig-drivers/src/power-registry.js';
import {
  type DriverEvent,
  DriverEventReader,
  type DriverFailureSummary,
  driverEventLine,
  type PowerAnswer,
} from '../../../protocol/src/driver-events.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { howJobEnded } from '../jobs/job-end-words.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import { isFinal } from '../jobs/job-state.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import { driverConfigArg } from './driver-config-file.js';
import type { JigDriverCommand } from './jig-driver-command.js';
import { AGENT_OWNER } from './job-keeper.js';
import { driverSaid, type PowerActionName, powerDeadlineMs, powerFailed, runPowerJob } from './power-job.js';

/** Drivers served by a per-action job: a long-lived process would hold their device. */
const PER_ACTION_DRIVERS: ReadonlySet<string> = new Set(['usb-hid-relay']);
/** How long a timed-out driver gets to end on SIGTERM before its cgroup is killed. */
const STOP_GRACE_MS = 1000;
/** A driver whose log has grown past this is replaced at its next action (bounded logs). */
const MAX_DRIVER_LOG_BYTES = 4 * 1024 * 1024;
/** Most stderr kept per action (the reason of a driver that dies while serving it). */
const MAX_STDERR_CHARS = 16 * 1024;

/** What one action ended with. */
export interface PowerActionResult {
  /** The job that served it: the long-lived driver job, or the per-action job. */
  jobId: string;
  state: 'on' | 'off' | 'unknown';
}

interface Waiter {
  id: number;
  resolve: (answer: PowerAnswer) => void;
}

/** One run of the driver job and its reader. */
interface Session {
  job: JobView;
  key: string;
  waiter: Waiter | undefined;
  stderr: string;
  /** Settles when the job's log is complete (the job ended). */
  ended: Promise<void>;
  done: boolean;
  abort: AbortController;
}

/** What a DUT's power driver works with. */
export interface PowerDriverOptions {
  supervisor: Supervisor;
  jigDriver: JigDriverCommand;
  dut: string;
  stateDir: string;
  log: Logger;
  /** Time an action may take beyond the driver's own deadlines (default: as a per-action job). */
  deadlineSlackMs?: number;
}

/** The power driver of one DUT. Not re-entrant: the caller runs one action at a time. */
export class PowerDriver {
  readonly #opts: PowerDriverOptions;
  #session: Session | undefined;
  #nextId = 1;
  #closed = false;
  /** Whose action the driver is serving now. */
  #serving: { owner: string; session: Session } | undefined;

  constructor(opts: PowerDriverOptions) {
    this.#opts = opts;
  }

  /** The driver job running now, if any. */
  get jobId(): string | undefined {
    return this.#session && !this.#session.done ? this.#session.job.record.id : undefined;
  }

  /** Runs one action; a failed one is a DriverFailedError naming the driver, why, and the job. */
  async run(opts: {
    power: PowerConfig;
    action: PowerActionName;
    offTimeMs?: number;
    owner: string;
  }): Promise<PowerActionResult> {
    const { power, action, offTimeMs, owner } = opts;
    const { supervisor, jigDriver, dut, stateDir } = this.#opts;
    if (PER_ACTION_DRIVERS.has(String(power.driver))) {
      const result = await runPowerJob({
        supervisor,
        jigDriver,
        dut,
        power,
        action,
        offTimeMs,
        owner,
        stateDir,
      });
      return { jobId: result.job.record.id, state: result.state };
    }
    if (this.#closed) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down');
    const timeoutMs = powerDeadlineMs(power, action, offTimeMs, this.#opts.deadlineSlackMs);
    const session = await this.#sessionFor(power);
    const id = this.#nextId++;
    session.stderr = '';
    const failed = (how: string, said: Partial<DriverFailureSummary>): JigletError =>
      powerFailed({ action, dut, driver: power.driver, jobId: session.job.record.id, how }, said);
    let timer: NodeJS.Timeout | undefined;
    this.#serving = { owner, session };
    const answer = await new Promise<PowerAnswer | 'ended' | 'timeout'>((resolve) => {
      session.waiter = { id, resolve };
      void session.ended.then(() => resolve('ended'));
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      const request = { id, action, ...(action === 'cycle' && offTimeMs ? { offTimeMs } : {}) };
      try {
        supervisor.stdinOf(session.job.record.id).write(driverEventLine({ kind: 'power-request', request }));
      } catch {
        // The job ended under us: its end answers.
      }
    }).finally(() => {
      clearTimeout(timer);
      session.waiter = undefined;
      this.#serving = undefined;
    });
    if (answer === 'timeout') {
      this.#session = undefined;
      await this.#stop(session, 'timeout');
      throw failed(`timed out after ${timeoutMs} ms`, driverSaid(session.stderr));
    }
    if (answer === 'ended') {
      this.#session = undefined;
      const { record } = await supervisor.ended(session.job.record.id);
      throw failed(howJobEnded(record, `timed out after ${timeoutMs} ms`), driverSaid(session.stderr));
    }
    if (!answer.ok) throw failed('failed', { code: answer.code, reason: answer.error });
    return { jobId: session.job.record.id, state: answer.state };
  }

  /**
   * Stops the action `owner` is running now, if any (its lease ended): the driver job is stopped
   * with `reason`, so the action fails saying so, and the next action starts a fresh driver.
   */
  async stopActionOf(owner: string, reason: 'lease'): Promise<void> {
    const serving = this.#serving;
    if (!serving || serving.owner !== owner) return;
    if (this.#session === serving.session) this.#session = undefined;
    await this.#stop(serving.session, reason);
  }

  /** Stops the driver job (the agent is shutting down or the DUT is going away). */
  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session;
    this.#session = undefined;
    if (session) await this.#stop(session, 'shutdown');
  }

  async #sessionFor(power: PowerConfig): Promise<Session> {
    const key = JSON.stringify(power);
    const current = this.#session;
    if (current && !current.done && current.key === key && current.job.outputBytes() < MAX_DRIVER_LOG_BYTES)
      return current;
    if (current) {
      this.#session = undefined;
      await this.#stop(current, 'request');
    }
    const { supervisor, jigDriver, dut, stateDir } = this.#opts;
    const spec: JobSpecInput = {
      command: jigDriver.command,
      args: [
        ...jigDriver.args,
        'power-serve',
        '--dut',
        dut,
        '--config',
        driverConfigArg(stateDir, `${dut}-power-serve`, power),
      ],
      env: {},
      cwd: '',
      dut,
      limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
      // No job timeout: each action has its own deadline, and a missed one stops the job.
      timeoutMs: 0,
      stdin: true,
    };
    // The power driver talks to relays and USB devices: an agent job, whoever asked for it.
    const job = await supervisor.start(spec, AGENT_OWNER, {
      privileged: true,
      title: `power driver for ${dut}`,
    });
    this.#opts.log.info({ job: job.record.id }, `power driver for ${dut} started`);
    const abort = new AbortController();
    const session: Session = {
      job,
      key,
      waiter: undefined,
      stderr: '',
      done: false,
      abort,
      ended: Promise.resolve(),
    };
    session.ended = this.#follow(session).then(
      () => {
        session.done = true;
      },
      (err: unknown) => {
        session.done = true;
        this.#opts.log.error({ err, job: job.record.id }, 'the power driver log is unreadable');
      },
    );
    this.#session = session;
    return session;
  }

  /** Reads the driver's log as it grows: answers from stdout, the current action's stderr. */
  async #follow(session: Session): Promise<void> {
    const log = session.job.output();
    const release = log.acquire();
    const out = new DriverEventReader();
    const err = new StringDecoder('utf8');
    let offset = 0;
    try {
      for (;;) {
        if (offset < log.start) offset = log.start;
        if (offset >= log.length) {
          if (log.closed || session.abort.signal.aborted) return;
          await log.waitForGrowth(offset, session.abort.signal);
          continue;
        }
        const piece = await log.read(offset, Math.min(64 * 1024, log.length - offset));
        if (piece.data.length === 0) return;
        offset += piece.data.length;
        if (piece.stream === 'stderr') {
          session.stderr = (session.stderr + err.write(piece.data)).slice(-MAX_STDERR_CHARS);
          continue;
        }
        for (const event of out.push(piece.data)) this.#answer(session, event);
      }
    } finally {
      release();
    }
  }

  #answer(session: Session, event: DriverEvent): void {
    if (event.kind !== 'power-answer') {
      const line = event.kind === 'text' ? event.text : driverEventLine(event);
      this.#opts.log.warn(
        { job: session.job.record.id, line: line.slice(0, 200) },
        'power driver said something odd',
      );
      return;
    }
    const waiter = session.waiter;
    if (waiter && event.answer.id === waiter.id) waiter.resolve(event.answer);
  }

  async #stop(session: Session, reason: 'timeout' | 'request' | 'shutdown' | 'lease'): Promise<void> {
    const id = session.job.record.id;
    try {
      if (!isFinal(this.#opts.supervisor.get(id).record.state))
        await this.#opts.supervisor.stop(id, STOP_GRACE_MS, reason);
    } catch (err) {
      if (!(err instanceof JigletError && err.code === 'JIGLET_E_ILLEGAL_TRANSITION'))
        this.#opts.log.warn({ err, job: id }, 'could not stop the power driver');
    } finally {
      session.abort.abort();
      await session.ended;
    }
  }
}
