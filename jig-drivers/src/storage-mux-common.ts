/**
 * What every storage mux driver shares: the settings each accepts, and each switch recorded as a
 * step, so a flash job's log shows when the medium moved, how long it took and how it failed.
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import { type StepSink, stepper } from '../../protocol/src/step.js';
import type { StorageMux, StorageMuxContext } from './storage-mux.js';

/**
 * Default deadline of one mux command. USB-SD-Mux's tool is Python talking I2C over USB (about a
 * second cold); sd-mux-ctrl reopens the FTDI chip each call. Both hang when the USB device is wedged.
 */
export const DEFAULT_MUX_TIMEOUT_MS = 10_000;

/** Settings every mux driver accepts, to spread into its own `z.strictObject`. */
export const commonMuxOptions = {
  timeoutMs: z.number().int().min(1).max(600_000).default(DEFAULT_MUX_TIMEOUT_MS),
};

/** What the registry gives a driver: the context plus an optional step sink. */
export interface StorageMuxStepContext extends StorageMuxContext {
  /** Receives one step per mux action (protocol's step.ts). */
  onStep?: StepSink;
}

/** Wraps a mux so that every action is a recorded step; `status` records the side it read. */
export function recordMuxSteps(inner: StorageMux, driver: string, ctx: StorageMuxStepContext): StorageMux {
  if (!ctx.onStep) return inner;
  const run = stepper(ctx.onStep, { dut: ctx.dutName, driver });
  return {
    toHost: () => run('to-host', () => inner.toHost()),
    toDut: () => run('to-dut', () => inner.toDut()),
    status: () => run('status', () => inner.status(), { describe: (side) => side }),
  };
}

/** The error for a tool or device answer the driver cannot read. */
export function unreadableAnswer(what: string, expected: string, got: string): JigletError {
  return new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `${what}: expected ${expected}, got ${JSON.stringify(got.trim().slice(0, 200))}`,
  );
}
