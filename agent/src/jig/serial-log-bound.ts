/**
 * Keeps a live serial capture's log within its bound (retention.serialLogMaxBytes). A capture
 * runs as long as the agent, so retention, which removes finished jobs, never reaches its log;
 * instead, once the log holds more than the bound, its oldest quarter is dropped in place (see
 * OutputLog.trimTo), off the request path and one trim at a time. Offsets never change, so
 * followers, checkpoints and expect offsets stay valid; a reader that asks for dropped bytes
 * starts at the oldest byte kept and gets a `trimmed` event saying so.
 */
import type { Logger } from 'pino';
import type { SerialMonitor } from './serial-monitor.js';

/** Share of the bound kept after a trim: trims come every quarter of the bound of output. */
const KEEP_SHARE = 0.75;

/** Watches `monitor` until its capture ends; trims its log whenever it passes `maxBytes`. */
export function boundSerialLog(monitor: SerialMonitor, maxBytes: number, log: Logger): void {
  let busy = false;
  let warned = false;
  const onRecord = (): void => {
    if (busy || monitor.log.storedBytes <= maxBytes) return;
    busy = true;
    const before = monitor.log.storedBytes;
    const startBefore = monitor.log.start;
    monitor
      .trimTo(Math.floor(maxBytes * KEEP_SHARE))
      .then(() => {
        log.info(
          { job: monitor.jobId, droppedBytes: before - monitor.log.storedBytes, start: monitor.log.start },
          'dropped the oldest part of the serial log (retention.serialLogMaxBytes)',
        );
      })
      .catch((err: unknown) => {
        // Readers skip the range already; only its disk blocks stay. Said once per capture.
        if (warned) return;
        warned = true;
        log.warn(
          { err, job: monitor.jobId },
          'could not free the oldest part of the serial log; the filesystem of the state directory may not support punching holes (ext4, xfs, btrfs and tmpfs do)',
        );
      })
      .finally(() => {
        busy = false;
        // Output that arrived during the trim may have passed the bound again (only when this
        // trim got somewhere: one that could not cut waits for more records).
        if (!warned && monitor.log.start > startBefore) onRecord();
      });
  };
  monitor.on('record', onRecord);
  monitor.once('end', () => monitor.off('record', onRecord));
}
