/**
 * What every storage mux driver shares: the settings each accepts and the step record of each
 * switch, so a flash job's log shows when the medium moved, how long it took and how it failed.
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import type { MuxSide, StorageMux, StorageMuxContext } from './storage-mux.js';

/**
 * Default deadline of one mux command. USB-SD-Mux's tool is Python talking I2C over USB (about a
 * second cold); sd-mux-ctrl reopens the FTDI chip each call. Both hang when the USB device is wedged.
 */
export const DEFAULT_MUX_TIMEOUT_MS = 10_000;

/** Settings every mux driver accepts, to spread into its own `z.strictObject`. */
export const commonMuxOptions = {
  timeoutMs: z.number().int().min(1).max(600_000).default(DEFAULT_MUX_TIMEOUT_MS),
};

/** One recorded mux action, for the job log. */
export interface StorageMuxStep {
  /** The DUT whose medium was switched. */
  dut: string;
  /** The driver name, e.g. `sdwire`. */
  driver: string;
  /** The action taken. */
  action: 'to-host' | 'to-dut' | 'status';
  /** Wall-clock duration of the action. */
  durationMs: number;
  /** The side read back, for `status`. */
  result?: MuxSide;
  /** How it failed, when it did. */
  error?: { code: string; message: string };
}

/** What the registry gives a driver: the context plus an optional step sink. */
export interface StorageMuxStepContext extends StorageMuxContext {
  /** Receives one record per mux action. */
  onStep?: (step: StorageMuxStep) => void;
}

/** Wraps a mux so that every action is reported to `ctx.onStep` with its duration and error. */
export function recordMuxSteps(inner: StorageMux, driver: string, ctx: StorageMuxStepContext): StorageMux {
  const onStep = ctx.onStep;
  if (!onStep) return inner;
  const run = async <T>(action: StorageMuxStep['action'], work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const step: StorageMuxStep = { dut: ctx.dutName, driver, action, durationMs: 0 };
    try {
      const value = await work();
      if (action === 'status') step.result = value as MuxSide;
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
    toHost: () => run('to-host', () => inner.toHost()),
    toDut: () => run('to-dut', () => inner.toDut()),
    status: () => run('status', () => inner.status()),
  };
}

/** The error for a tool or device answer the driver cannot read. */
export function unreadableAnswer(what: string, expected: string, got: string): JigletError {
  return new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `${what}: expected ${expected}, got ${JSON.stringify(got.trim().slice(0, 200))}`,
  );
}
