/**
 * Counts the serial bytes each DUT sent, across capture restarts: every capture's SerialMonitor
 * is followed from the moment it appears (its bytes so far counted at once) until it ends.
 */
import type { Counter } from 'prom-client';
import type { PositionedRecord } from '../../../jig-drivers/src/serial-framing.js';
import type { DutRuntime } from '../jig/dut-runtime.js';
import type { SerialMonitor } from '../jig/serial-monitor.js';

/** Follows the captures of `duts`; returns the function that stops following. */
export function countSerialBytes(duts: readonly DutRuntime[], counter: Counter<'dut'>): () => void {
  const stops = new Set<() => void>();
  for (const dut of duts) {
    if (!dut.dut.serial) continue;
    const bytes = counter.labels({ dut: dut.dut.name });
    bytes.inc(0); // a DUT that has said nothing yet shows 0, not no series
    const follow = (monitor: SerialMonitor): void => {
      bytes.inc(monitor.bytesCaptured);
      const onRecord = (record: PositionedRecord): void => {
        if (record.kind === 'chunk') bytes.inc(record.data.length);
      };
      const stop = (): void => {
        monitor.off('record', onRecord);
        monitor.off('end', stop);
        stops.delete(stop);
      };
      monitor.on('record', onRecord);
      monitor.once('end', stop);
      stops.add(stop);
    };
    if (dut.capture) follow(dut.capture);
    dut.on('capture', follow);
    stops.add(() => dut.off('capture', follow));
  }
  return () => {
    for (const stop of [...stops]) stop();
  };
}
