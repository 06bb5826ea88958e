/**
 * A DUT's serial capture: a long-lived `jig-driver serial` job per DUT, started with the agent and
 * restarted by a JobKeeper if it ever ends. Each start gives a new SerialMonitor over the job's log.
 */
import { once } from 'node:events';
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import type { JigDriverCommand } from './jig-driver-command.js';
import { JobKeeper } from './job-keeper.js';
import { boundSerialLog } from './serial-log-bound.js';
import { SerialMonitor } from './serial-monitor.js';

/** Longest the agent waits at start for a capture's first word about its port. */
const CAPTURE_READY_MS = 10_000;

/** What starting a capture works with. */
export interface SerialCaptureOptions {
  dut: DutDescription;
  supervisor: Supervisor;
  jigDriver: JigDriverCommand;
  log: Logger;
  /** Most bytes the live serial log keeps (see serial-log-bound.ts). */
  serialLogMaxBytes: number;
  /** Called with the monitor of each capture job that starts (the first and every restart). */
  onStarted: (monitor: SerialMonitor) => void;
}

/** A capture being started: its keeper (close it to stop restarting) and when it is ready. */
export interface SerialCapture {
  keeper: JobKeeper;
  /** Resolves once the capture has said where the port stands, or after CAPTURE_READY_MS. */
  ready: Promise<void>;
}

/** Starts the capture of a DUT that has a serial resource. */
export function startSerialCapture(o: SerialCaptureOptions): SerialCapture {
  const { dut, supervisor, jigDriver, log } = o;
  const serial = dut.serial!;
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
    dut: dut.name,
    limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
    timeoutMs: 0,
    stdin: true,
  };
  let latest: SerialMonitor | undefined;
  const keeper = new JobKeeper(`serial capture of ${dut.name}`, spec, supervisor, log);
  keeper.on('started', (job: JobView) => {
    const monitor = new SerialMonitor(job.record.id, job.output(), (err) =>
      log.error({ err, job: job.record.id }, 'the serial capture log is unreadable'),
    );
    boundSerialLog(monitor, o.serialLogMaxBytes, log);
    latest = monitor;
    o.onStarted(monitor);
  });
  return { keeper, ready: captureReady(keeper, () => latest, log) };
}

async function captureReady(
  keeper: JobKeeper,
  latest: () => SerialMonitor | undefined,
  log: Logger,
): Promise<void> {
  await keeper.start();
  // Serve only once the capture has said where the port stands (open, or absent): a client that
  // powers a DUT on right after the agent started must not lose the boot log to the capture's
  // own start-up. Bounded: a capture that says nothing is reported and the agent goes on.
  const monitor = latest();
  if (monitor && monitor.state === 'starting') {
    try {
      await once(monitor, 'record', { signal: AbortSignal.timeout(CAPTURE_READY_MS) });
    } catch {
      log.warn({ job: monitor.jobId }, `the serial capture said nothing within ${CAPTURE_READY_MS} ms`);
    }
  }
}
