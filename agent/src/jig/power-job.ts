/**
 * One power action as a `jig-driver power` job: the caller owns the job, so it shows up in
 * `jigctl ps` with its steps and errors like any other job, and a hung driver is stopped by the
 * job timeout rather than holding the DUT's power lock forever.
 */

import type { PowerConfig } from '../../../jig-drivers/src/power-registry.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { howJobEnded } from '../jobs/job-end-words.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import { driverConfigArg } from './driver-config-file.js';
import type { JigDriverCommand } from './jig-driver-command.js';

/** What a power request asks for. */
export type PowerActionName = 'on' | 'off' | 'cycle' | 'status';

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

/** Runs the action and waits for its job; a failed driver is JIGLET_E_DRIVER_FAILED with its reason. */
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
  const { stdout, stderr } = await readAll(job);
  const { record } = job;
  if (record.state !== 'exited' || record.exitCode !== 0) {
    const how = howJobEnded(record, `timed out after ${timeoutMs} ms`);
    const reason = driverReason(stderr);
    throw new JigletError(
      'JIGLET_E_DRIVER_FAILED',
      `power ${action} of ${opts.dut} failed: the ${String(config.driver)} driver ${how}${reason ? `: ${reason}` : ''} (job ${record.id})`,
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

/** A power job's output is a few hundred bytes; the log is read whole. */
async function readAll(job: JobView): Promise<{ stdout: string; stderr: string }> {
  const log = job.output();
  const release = log.acquire();
  try {
    let stdout = '';
    let stderr = '';
    let offset = 0;
    while (offset < log.length) {
      const piece = await log.read(offset, Math.min(64 * 1024, log.length - offset));
      if (piece.data.length === 0) break;
      offset += piece.data.length;
      if (piece.stream === 'stdout') stdout += piece.data.toString('utf8');
      else stderr += piece.data.toString('utf8');
    }
    return { stdout, stderr };
  } finally {
    release();
  }
}

/** The driver's own words: step errors and `jig-driver:` lines, not the step bookkeeping. */
export function driverReason(stderr: string): string {
  const reasons: string[] = [];
  for (const line of stderr.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const parsed = JSON.parse(line) as { step?: { error?: { message?: string } } };
      const message = parsed.step?.error?.message;
      if (message && !reasons.includes(message)) reasons.push(message);
    } catch {
      const text = line.replace(/^jig-driver: /, '');
      if (!reasons.includes(text)) reasons.push(text);
    }
  }
  return reasons.slice(-3).join('; ').slice(0, 2000);
}
