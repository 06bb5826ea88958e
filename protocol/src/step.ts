/**
 * The one recorder of hardware actions (labgrid's `@step`): every power switch, mux switch, flash
 * phase and DUT-state transition runs through `step()`, which times it and hands one `StepEvent`
 * (title, arguments, duration, what it read back, its coded error) to a sink. A driver job's sink
 * prints the event as a JSON line (driver-events.ts); the agent's sinks publish it to the run record.
 */
import { failureOf, type StepArg, type StepEvent } from './driver-events.js';

/** Receives one event per finished step. */
export type StepSink = (event: StepEvent) => void;

/** What a step is: its title and the arguments worth recording. */
export interface StepInfo {
  /** The DUT acted on. */
  dut?: string;
  /** The driver acting. */
  driver?: string;
  /** The title: the action taken. */
  action: string;
  /** What it acts on (an image, a device). */
  target?: string;
  /** Other arguments worth recording. */
  args?: Record<string, StepArg>;
}

/**
 * Runs `work` as one step and records it to `sink` when it settles: its duration, `describe`'s
 * words for what it returned (a state read back), or the coded error it failed with. The result
 * or error passes through unchanged; without a sink, `work` just runs.
 */
export async function step<T>(
  sink: StepSink | undefined,
  info: StepInfo,
  work: () => Promise<T>,
  describe?: (value: T) => string | undefined,
): Promise<T> {
  if (!sink) return work();
  const started = performance.now();
  const record = (outcome: Pick<StepEvent, 'result' | 'error'>): void => {
    sink({
      ...(info.dut !== undefined && { dut: info.dut }),
      ...(info.driver !== undefined && { driver: info.driver }),
      action: info.action,
      ...(info.target !== undefined && { target: info.target }),
      ...(info.args !== undefined && { args: info.args }),
      durationMs: Math.round(performance.now() - started),
      ...outcome,
    });
  };
  let value: T;
  try {
    value = await work();
  } catch (error) {
    record({ error: failureOf(error) });
    throw error;
  }
  const result = describe?.(value);
  record(result === undefined ? {} : { result });
  return value;
}

/**
 * A `step` bound to a sink and to what every step of one driver shares (its DUT and name), for a
 * driver that records many actions.
 */
export function stepper(
  sink: StepSink | undefined,
  common: Pick<StepInfo, 'dut' | 'driver'> = {},
): <T>(
  action: string,
  work: () => Promise<T>,
  more?: { target?: string; args?: Record<string, StepArg>; describe?: (value: T) => string | undefined },
) => Promise<T> {
  return (action, work, more = {}) =>
    step(sink, { ...common, action, target: more.target, args: more.args }, work, more.describe);
}
