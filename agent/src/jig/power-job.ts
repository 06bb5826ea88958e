/**
 * One power action as a `jig-driver power` job: the caller owns the job, so it shows up in
 * `jigctl ps` with its steps and errors like any other job, and a hung driver is stopped by the
 * job timeout rather than holding the DUT's power lock forever.
 */

import type { PowerConfig } from '../../../jig-drivers/src/power-registry.js';
import {
  type DriverFailureSummary,
  type PowerAction,
  readDriverText,
  summarizeDriverFailure,
} from '../../../protocol/src/driver-events.js';
import { DriverFailedError } from '../../../protocol/src/errors.js';
import { howJobEnded } from '../jobs/job-end-words.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import { driverConfigArg } from './driver-config-file.js';
import { readDriverOutput } from './driver-job-output.js';
import type { JigDriverCommand } from './jig-driver-command.js';

/** What a power request asks for. */
export type PowerActionName = PowerAction;

/** Time a driver job may take beyond its own deadlines (Node start, output, exit). */
const JOB_OVERHEAD_MS = 15_000;
/** Default per-request deadline of a driver, as in jig-drivers' commonPowerOptions. */
const DRIVER_TIMEOUT_MS = 5000;
const DRIVER_OFF_TIME_MS = 2000;

/** A finished power job. */
export interface PowerJobResult {
  job: JobView;
  state: 'on' | 'off' | 'unknown';
}

/** Runs the action and waits for its job; a failed driver is a DriverFailedError with its reason. */
export async function runPowerJob(opts: {
  supervisor: Supervisor;
  jigDriver: JigDriverCommand;
  dut: string;
  power: PowerConfig;
  action: PowerActionName;
  offTimeMs?: number;
  owner: string;
  /** Where the config file goes (the agent's state directory). */
  stateDir: string;
}): Promise<PowerJobResult> {
  const { supervisor, action } = opts;
  const config: PowerConfig =
    action === 'cycle' && opts.offTimeMs ? { ...opts.power, offTimeMs: opts.offTimeMs } : opts.power;
  const timeoutMs = powerDeadlineMs(opts.power, action, opts.offTimeMs);
  const spec: JobSpecInput = {
    command: opts.jigDriver.command,
    args: [
      ...opts.jigDriver.args,
      'power',
      action,
      '--dut',
      opts.dut,
      '--config',
      // One file per DUT: its power actions run one at a time.
      driverConfigArg(opts.stateDir, `${opts.dut}-power`, config),
    ],
    env: {},
    cwd: '',
    dut: opts.dut,
    limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
    timeoutMs,
    stdin: false,
  };
  // The power driver talks to relays and USB devices: an agent job, whoever asked for it.
  const started = await supervisor.start(spec, opts.owner, { privileged: true, title: `power ${action}` });
  const job = await supervisor.ended(started.record.id);
  // A power job's output is a few hundred bytes: the log is read whole.
  const { stdout, stderr } = await readDriverOutput(job);
  const { record } = job;
  if (record.state !== 'exited' || record.exitCode !== 0) {
    const how = howJobEnded(record, `timed out after ${timeoutMs} ms`);
    throw powerFailed(
      { action, dut: opts.dut, driver: config.driver, jobId: record.id, how },
      driverSaid(stderr),
    );
  }
  if (action === 'status') {
    const said = stdout.trim();
    return { job, state: said === 'on' || said === 'off' ? said : 'unknown' };
  }
  return { job, state: action === 'off' ? 'off' : 'on' };
}

/** The deadline of one power action: the driver's own deadlines plus a Node start and its output. */
export function powerDeadlineMs(
  power: PowerConfig,
  action: PowerActionName,
  offTimeMs?: number,
  slackMs = JOB_OVERHEAD_MS,
): number {
  const perRequest = numberOr(power.timeoutMs, DRIVER_TIMEOUT_MS);
  return action === 'cycle'
    ? 2 * perRequest + (offTimeMs || numberOr(power.offTimeMs, DRIVER_OFF_TIME_MS)) + slackMs
    : perRequest + slackMs;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/** What a power driver said on stderr: its code and its own words (protocol's driver-events.ts). */
export function driverSaid(stderr: string): DriverFailureSummary {
  return summarizeDriverFailure(readDriverText(stderr));
}

/**
 * The error of a failed power action, in the same words whichever way it ran: the action, the
 * DUT, the driver, how it ended, its reason, and the job (also as data, with the driver's code).
 */
export function powerFailed(
  what: { action: PowerActionName; dut: string; driver: unknown; jobId: string; how: string },
  said: Partial<DriverFailureSummary>,
): DriverFailedError {
  const reason = said.reason ? `: ${said.reason}` : '';
  return new DriverFailedError(
    `power ${what.action} of ${what.dut} failed: the ${String(what.driver)} driver ${what.how}${reason} (job ${what.jobId})`,
    { jobId: what.jobId, driverCode: said.code },
  );
}
