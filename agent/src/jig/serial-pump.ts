/**
 * Streams a DUT's serial log to one reader (tail, console or expect) from where it asked, and
 * across capture restarts: when the capture job ends and a new one takes over, the reader is told
 * and goes on from the start of the new log. One implementation, so the three readers agree.
 */
import { once } from 'node:events';
import type { PositionedRecord } from '../../../jig-drivers/src/serial-framing.js';
import { JigletError } from '../../../protocol/src/errors.js';
import type { DutRuntime } from './dut-runtime.js';
import { followSerial } from './serial-follow.js';
import type { SerialMonitor } from './serial-monitor.js';

/** Where a reader starts: an offset, a time, the current end, or (empty) the start of the log. */
export type SerialStart =
  | { offset: number }
  | { sinceMs: number }
  | { fromEnd: true }
  | Record<string, never>;

/** A reader of serial records. */
export interface SerialReader {
  /** Called when a new capture job's log starts (also for the first one). */
  onCapture?(monitor: SerialMonitor, restarted: boolean): void;
  /** Receives a record of `monitor`'s log; false = "full, wait for drained()". */
  onRecord(record: PositionedRecord, monitor: SerialMonitor): boolean;
  drained(signal: AbortSignal): Promise<void>;
}

/** Resolves the start against the current capture; an offset past its end is OUT_OF_RANGE. */
export function resolveStart(
  monitor: SerialMonitor,
  start: SerialStart,
): { from: number; skipBefore: number; skipUntilMs: number } {
  if ('offset' in start) {
    if (start.offset > monitor.log.length) {
      throw new JigletError(
        'JIGLET_E_OUT_OF_RANGE',
        `offset ${start.offset} is past the end of the serial log (${monitor.log.length} bytes, capture job ${monitor.jobId})`,
      );
    }
    return { from: monitor.seek({ offset: start.offset }), skipBefore: start.offset, skipUntilMs: 0 };
  }
  if ('sinceMs' in start)
    return { from: monitor.seek({ sinceMs: start.sinceMs }), skipBefore: 0, skipUntilMs: start.sinceMs };
  if ('fromEnd' in start) return { from: monitor.boundary, skipBefore: monitor.boundary, skipUntilMs: 0 };
  return { from: 0, skipBefore: 0, skipUntilMs: 0 };
}

/**
 * Pumps records until the reader is caught up (without follow), `signal` aborts, or the DUT
 * runtime closes. Resolves 'aborted' when the reader went away, 'done' otherwise.
 */
export async function pumpSerial(opts: {
  dut: DutRuntime;
  start: SerialStart;
  follow: boolean;
  signal: AbortSignal;
  reader: SerialReader;
}): Promise<'aborted' | 'done'> {
  const { dut, follow, signal, reader } = opts;
  let monitor = dut.requireCapture();
  let position = resolveStart(monitor, opts.start);
  let restarted = false;
  for (;;) {
    reader.onCapture?.(monitor, restarted);
    const current = monitor;
    const end = await followSerial({
      log: current.log,
      from: position.from,
      skipBefore: position.skipBefore,
      skipUntilMs: position.skipUntilMs,
      follow,
      signal,
      onRecord: (record) => reader.onRecord(record, current),
      drained: (s) => reader.drained(s),
    });
    if (end === 'aborted') return 'aborted';
    if (!follow || end === 'caught-up') return 'done';
    const next = await nextCapture(dut, current, signal);
    if (!next) return signal.aborted ? 'aborted' : 'done';
    monitor = next;
    position = { from: 0, skipBefore: 0, skipUntilMs: 0 };
    restarted = true;
  }
}

/** The capture that replaced `previous`, or undefined if the DUT runtime closed or `signal` aborted. */
async function nextCapture(
  dut: DutRuntime,
  previous: SerialMonitor,
  signal: AbortSignal,
): Promise<SerialMonitor | undefined> {
  while (!dut.closed && !signal.aborted) {
    const now = dut.capture;
    if (now && now !== previous) return now;
    const ac = new AbortController();
    const both = AbortSignal.any([signal, ac.signal]);
    try {
      await Promise.race([once(dut, 'capture', { signal: both }), once(dut, 'closed', { signal: both })]);
    } catch {
      // aborted: the loop condition decides
    } finally {
      ac.abort(); // removes the other listener
    }
  }
  return undefined;
}
