/**
 * The power capability. The rest of jiglet depends on `PowerSwitch` only; each driver is a
 * `PowerDriverFactory` that declares its config schema and is looked up by name in the registry.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';

/** What a power switch reports; `unknown` when the hardware cannot be read back. */
export type PowerState = 'on' | 'off' | 'unknown';

/** Switches one DUT's power. */
export interface PowerSwitch {
  /** Turns the DUT's power on. */
  on(): Promise<void>;
  /** Turns the DUT's power off. */
  off(): Promise<void>;
  /** Off, wait the configured off time, on. */
  cycle(): Promise<void>;
  /** Reads the current state back from the hardware. */
  status(): Promise<PowerState>;
}

/** One recorded hardware action, for the job log. */
export interface PowerStep {
  /** The DUT acted on. */
  dut: string;
  /** The driver name, e.g. `tasmota`. */
  driver: string;
  /** The action taken. */
  action: 'on' | 'off' | 'cycle' | 'status';
  /** Wall-clock duration of the action. */
  durationMs: number;
  /** The state read back, for `status`. */
  result?: PowerState;
  /** How it failed, when it did. */
  error?: { code: string; message: string };
}

/** What a driver gets besides its config. */
export interface PowerDriverContext {
  /** The DUT this switch powers (for messages). */
  dutName: string;
  /** Receives one record per hardware action. */
  onStep?: (step: PowerStep) => void;
}

/** A power driver: its name, the config it accepts, and how to build a switch from that config. */
export interface PowerDriverFactory<S extends z.ZodType = z.ZodType> {
  /** The `driver:` value that selects it in a jig description. */
  readonly name: string;
  /** Validates (and fills defaults of) the whole `power:` mapping, `driver` key included. */
  readonly configSchema: S;
  /** Builds a switch from a config that passed `configSchema`. */
  create(config: z.output<S>, ctx: PowerDriverContext): PowerSwitch;
}

/** Default time the DUT stays off during a cycle. */
export const DEFAULT_OFF_TIME_MS = 2000;
/** Default deadline of one command/request to the power hardware. */
export const DEFAULT_POWER_TIMEOUT_MS = 5000;

/** Settings every power driver accepts, to spread into its own `z.strictObject`. */
export const commonPowerOptions = {
  // Off time is a real hardware need, not a guess at a race: the DUT's rails and capacitors must
  // drain or a "cycle" is a brown-out that some boards (Raspberry Pi's PMIC) do not reset from.
  offTimeMs: z.number().int().min(0).max(600_000).default(DEFAULT_OFF_TIME_MS),
  timeoutMs: z.number().int().min(1).max(600_000).default(DEFAULT_POWER_TIMEOUT_MS),
};

/** The primitive operations a driver implements; `makePowerSwitch` adds cycle on top. */
export interface PowerOps {
  /** Turns power on. */
  on(): Promise<void>;
  /** Turns power off. */
  off(): Promise<void>;
  /** Reads the state back. */
  status(): Promise<PowerState>;
}

/** Builds a `PowerSwitch` whose cycle is off, `offTimeMs` pause, on. */
export function makePowerSwitch(ops: PowerOps, options: { offTimeMs: number }): PowerSwitch {
  return {
    on: () => ops.on(),
    off: () => ops.off(),
    status: () => ops.status(),
    async cycle() {
      await ops.off();
      await delay(options.offTimeMs);
      await ops.on();
    },
  };
}

/** Wraps a switch so that every action is reported to `ctx.onStep` with its duration and error. */
export function recordPowerSteps(inner: PowerSwitch, driver: string, ctx: PowerDriverContext): PowerSwitch {
  const onStep = ctx.onStep;
  if (!onStep) return inner;
  const run = async <T>(action: PowerStep['action'], work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const step: PowerStep = { dut: ctx.dutName, driver, action, durationMs: 0 };
    try {
      const value = await work();
      if (action === 'status') step.result = value as PowerState;
      return value;
    } catch (error) {
      const code = error instanceof JigletError ? error.code : 'JIGLET_E_INTERNAL';
      step.error = { code, message: error instanceof Error ? error.message : String(error) };
      throw error;
    } finally {
      step.durationMs = Math.round(performance.now() - started);
      onStep(step);
    }
  };
  return {
    on: () => run('on', () => inner.on()),
    off: () => run('off', () => inner.off()),
    cycle: () => run('cycle', () => inner.cycle()),
    status: () => run('status', () => inner.status()),
  };
}
