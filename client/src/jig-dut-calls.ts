/**
 * JigService's DUT calls, as `client.jig` makes them: the DUT list, power, health (set and
 * check) and starting a flash of a cached image.
 */
import { Metadata } from '@grpc/grpc-js';
import {
  type CheckDutHealthResponse,
  type Dut,
  DutHealth,
  type FlashResponse,
  type JigServiceClient,
  type ListDutsResponse,
  PowerAction,
  type PowerResponse,
  PowerState,
  type SetDutStateResponse,
} from '../../protocol/gen/jiglet/v1/jig.js';
import { JigletError } from '../../protocol/src/errors.js';
import { callOptions, UNARY_DEADLINE_MS, unaryCall } from './unary-call.js';

/** A power action by name. */
export type PowerActionName = 'on' | 'off' | 'cycle' | 'status';

const ACTIONS: Record<PowerActionName, PowerAction> = {
  on: PowerAction.POWER_ACTION_ON,
  off: PowerAction.POWER_ACTION_OFF,
  cycle: PowerAction.POWER_ACTION_CYCLE,
  status: PowerAction.POWER_ACTION_STATUS,
};

/** A DUT's health by name. */
export type DutStateName = 'good' | 'bad' | 'maintenance';

const HEALTH: Record<DutStateName, DutHealth> = {
  good: DutHealth.DUT_HEALTH_GOOD,
  bad: DutHealth.DUT_HEALTH_BAD,
  maintenance: DutHealth.DUT_HEALTH_MAINTENANCE,
};

/**
 * Longest a health check call waits: the agent bounds each check by its configured timeout (at
 * most 12 h), and the check may first wait for the previous holder's clean-up.
 */
const HEALTH_CHECK_DEADLINE_MS = 13 * 3600 * 1000;

/** What a health check decided. */
export interface HealthCheckResult {
  /** The DUT after the check. */
  dut: Dut;
  /** The check job; `jigctl logs` shows why it failed. */
  jobId: string;
  passed: boolean;
}

/** What a power action did. */
export interface PowerResult {
  dut: string;
  state: 'on' | 'off' | 'unknown';
  /** The `jig-driver power` job, whose output has the driver's steps. */
  jobId: string;
  /** Serial-log offset just before the action: expect from here to see only this boot. */
  serialOffset: number;
  durationMs: number;
}

/** The DUTs with their resources' states; see JigClient.duts. */
export async function listDuts(stub: JigServiceClient, labels: Record<string, string>): Promise<Dut[]> {
  const res = await unaryCall<ListDutsResponse>((cb) =>
    stub.listDuts({ labels }, new Metadata(), callOptions(), cb),
  );
  return res.duts;
}

/** Switches or reads a DUT's power; see JigClient.power. */
export async function power(
  stub: JigServiceClient,
  dut: string,
  action: PowerActionName,
  opts: { offTimeMs?: number },
): Promise<PowerResult> {
  const wire = ACTIONS[action];
  if (wire === undefined)
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `power action "${action}" is not one of on, off, cycle, status`,
    );
  // A cycle waits its off time plus two driver deadlines; leave room beyond the agent's own timeout.
  const deadline = UNARY_DEADLINE_MS * 2 + (opts.offTimeMs ?? 0);
  const res = await unaryCall<PowerResponse>((cb) =>
    stub.power(
      { dut, action: wire, offTimeMs: opts.offTimeMs ?? 0 },
      new Metadata(),
      callOptions(deadline),
      cb,
    ),
  );
  return {
    dut: res.dut,
    state:
      res.state === PowerState.POWER_STATE_ON
        ? 'on'
        : res.state === PowerState.POWER_STATE_OFF
          ? 'off'
          : 'unknown',
    jobId: res.jobId,
    serialOffset: Number(res.serialOffset),
    durationMs: res.durationMs,
  };
}

/** Sets a DUT's health (admin); see JigClient.setState. */
export async function setDutState(
  stub: JigServiceClient,
  dut: string,
  state: DutStateName,
  reason: string,
): Promise<Dut> {
  const wire = HEALTH[state];
  if (wire === undefined)
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `DUT state "${state}" is not one of good, bad, maintenance`,
    );
  const res = await unaryCall<SetDutStateResponse>((cb) =>
    stub.setDutState({ dut, state: wire, reason }, new Metadata(), callOptions(), cb),
  );
  return dutOf(res);
}

/** Runs the DUT's health check now (admin); see JigClient.checkHealth. */
export async function checkHealth(stub: JigServiceClient, dut: string): Promise<HealthCheckResult> {
  const res = await unaryCall<CheckDutHealthResponse>((cb) =>
    stub.checkDutHealth({ dut }, new Metadata(), callOptions(HEALTH_CHECK_DEADLINE_MS), cb),
  );
  return { dut: dutOf(res), jobId: res.jobId, passed: res.passed };
}

/** Starts flashing a cached image; see JigClient.flash. */
export async function startFlash(
  stub: JigServiceClient,
  dut: string,
  opts: { imageSha256: string; bmapSha256?: string; verify: boolean; followUpload?: boolean },
): Promise<FlashResponse> {
  // Powering the DUT off first can take a driver's deadline; the job itself is followed separately.
  return unaryCall<FlashResponse>((cb) =>
    stub.flash(
      {
        dut,
        imageSha256: opts.imageSha256,
        bmapSha256: opts.bmapSha256 ?? '',
        noVerify: !opts.verify,
        followUpload: opts.followUpload ?? false,
      },
      new Metadata(),
      callOptions(UNARY_DEADLINE_MS * 2),
      cb,
    ),
  );
}

/** The DUT an answer carries (the agent always sends it). */
function dutOf(res: { dut?: Dut }): Dut {
  if (!res.dut) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered without the DUT');
  return res.dut;
}
