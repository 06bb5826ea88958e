/**
 * The power capability. The rest of jiglet depends on `PowerSwitch` only; each driver is a
 * `PowerDriverFactory` that declares its config schema and is looked up by name in the registry.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { type StepSink, stepper } from '../../protocol/src/step.js';

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

/** What a driver gets besides its config. */
export interface PowerDriverContext {
  /** The DUT this switch powers (for messages). */
  dutName: string;
  /** Receives one step per hardware action (protocol's step.ts). */
  onStep?: StepSink;
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

/** Wraps a switch so that every action is a recorded step; `status` records the state it read. */
export function recordPowerSteps(inner: PowerSwitch, driver: string, ctx: PowerDriverContext): PowerSwitch {
  if (!ctx.onStep) return inner;
  const run = stepper(ctx.onStep, { dut: ctx.dutName, driver });
  return {
    on: () => run('on', () => inner.on()),
    off: () => run('off', () => inner.off()),
    cycle: () => run('cycle', () => inner.cycle()),
    status: () => run('status', () => inner.status(), { describe: (state) => state }),
  };
}
