/** Conversions between the jig runtime and jiglet.v1.JigService messages. */
import type { PositionedRecord } from '../../../jig-drivers/src/serial-framing.js';
import { describeMatch } from '../../../jig-drivers/src/usb-match.js';
import {
  type Dut,
  DutHealth,
  PowerAction,
  PowerState,
  type SerialChunk,
  type SerialEvent,
  SerialState,
} from '../../../protocol/gen/jiglet/v1/jig.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { DutHealth as Health } from '../jig/dut-health.js';
import type { HealthState } from '../jig/dut-health-file.js';
import type { DutRuntime, PowerStatus } from '../jig/dut-runtime.js';
import type { PowerActionName } from '../jig/power-job.js';
import type { PortState } from '../jig/serial-monitor.js';

const POWER_STATES: Record<PowerStatus['state'], PowerState> = {
  on: PowerState.POWER_STATE_ON,
  off: PowerState.POWER_STATE_OFF,
  unknown: PowerState.POWER_STATE_UNKNOWN,
};

const PORT_STATES: Record<PortState, SerialState> = {
  starting: SerialState.SERIAL_STATE_STARTING,
  open: SerialState.SERIAL_STATE_OPEN,
  absent: SerialState.SERIAL_STATE_ABSENT,
  stopped: SerialState.SERIAL_STATE_STOPPED,
};

const ACTIONS: Partial<Record<PowerAction, PowerActionName>> = {
  [PowerAction.POWER_ACTION_ON]: 'on',
  [PowerAction.POWER_ACTION_OFF]: 'off',
  [PowerAction.POWER_ACTION_CYCLE]: 'cycle',
  [PowerAction.POWER_ACTION_STATUS]: 'status',
};

const HEALTH_STATES: Record<HealthState, DutHealth> = {
  good: DutHealth.DUT_HEALTH_GOOD,
  bad: DutHealth.DUT_HEALTH_BAD,
  maintenance: DutHealth.DUT_HEALTH_MAINTENANCE,
};

/** The health state a request names; INVALID_ARGUMENT for none or an unknown one. */
export function healthStateOf(state: DutHealth): HealthState {
  const found = (Object.keys(HEALTH_STATES) as HealthState[]).find((name) => HEALTH_STATES[name] === state);
  if (!found) throw invalidArgument(`DUT state ${state} is not one of good, bad, maintenance`);
  return found;
}

/** The action a request names; INVALID_ARGUMENT for none or an unknown one. */
export function powerActionOf(action: PowerAction): PowerActionName {
  const name = ACTIONS[action];
  if (!name) throw invalidArgument(`power action ${action} is not one of on, off, cycle, status`);
  return name;
}

/** The wire form of a power state. */
export function toWirePowerState(state: PowerStatus['state']): PowerState {
  return POWER_STATES[state];
}

/** A DUT and its resources' states, with its health. */
export function toWireDut(d: DutRuntime, health: Health): Dut {
  const capture = d.capture;
  const h = health.record;
  return {
    name: d.dut.name,
    labels: { ...d.dut.labels },
    safePower: d.dut.safeState.power,
    health: HEALTH_STATES[h.state],
    healthReason: h.reason,
    healthChanged: h.changedAt ? new Date(h.changedAt) : undefined,
    healthChangedBy: h.by,
    lastHealthCheck: h.lastCheckAt ? new Date(h.lastCheckAt) : undefined,
    healthCheckJob: h.lastCheckJobId,
    healthCheckPassed: h.lastCheckPassed,
    hasHealthCheck: health.hasCheck,
    power: d.dut.power
      ? {
          driver: d.dut.power.driver,
          state: POWER_STATES[d.power.state],
          stateTime: d.power.at ? new Date(d.power.at) : undefined,
          lastJobId: d.power.lastJobId,
          lastError: d.power.lastError,
          busy: d.power.busy > 0,
        }
      : undefined,
    serial: d.dut.serial
      ? {
          source: d.serialSource,
          port: capture?.port ?? '',
          baud: d.dut.serial.baud,
          state: PORT_STATES[capture?.state ?? 'stopped'],
          captureJobId: capture?.jobId ?? '',
          endOffset: BigInt(capture?.boundary ?? 0),
          bytesCaptured: BigInt(capture?.bytesCaptured ?? 0),
          lastEvent: capture?.lastEvent ?? '',
          lastEventTime: capture?.lastEventAt ? new Date(capture.lastEventAt) : undefined,
          consoleWriter: d.writer?.who.name ?? '',
        }
      : undefined,
    storage: d.dut.storage
      ? {
          mux: d.dut.storage.mux.driver,
          device:
            d.dut.storage.device.path ??
            `usb ${describeMatch(d.dut.storage.device.usb ?? {}, 'block').replace(/^block /, '')}`,
          dirty: d.storage.dirty,
          lastJobId: d.storage.lastJobId,
          lastImageSha256: d.storage.lastImageSha256,
          lastFlashed: d.storage.lastFlashedAt ? new Date(d.storage.lastFlashedAt) : undefined,
          busy: d.flashing !== undefined,
        }
      : undefined,
  };
}

/** A serial record as a chunk or an event message. */
export function toWireRecord(record: PositionedRecord): { chunk: SerialChunk } | { event: SerialEvent } {
  const where = {
    offset: BigInt(record.offset),
    nextOffset: BigInt(record.nextOffset),
    time: new Date(record.at),
  };
  return record.kind === 'chunk'
    ? { chunk: { ...where, data: record.data } }
    : { event: { ...where, event: record.event, detail: record.detail } };
}

/** The synthetic event that tells a reader a new capture job's log follows. */
export function captureRestartedEvent(jobId: string): { event: SerialEvent } {
  return {
    event: { offset: 0n, nextOffset: 0n, time: new Date(), event: 'capture-restarted', detail: jobId },
  };
}
