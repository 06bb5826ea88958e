/**
 * Reads a flash job's JSON progress lines from its output log as the job writes them, and turns
 * them into timestamped samples. The output log keeps no time per chunk (only per stream change),
 * so the time of a progress point can only be taken live, when the line reaches the log.
 */
import { parseProgressLine } from '../../../protocol/src/driver-events.js';
import { followLog } from '../output/follow-log.js';
import type { OutputLog } from '../output/output-log.js';
import type { FlashProgressEntry } from './journal-entry.js';

/**
 * Shortest gap between two samples of one phase. The flasher prints at most every 250 ms; half
 * a second still draws a throughput curve and keeps a four-hour flash under ~3 MiB of journal.
 */
export const SAMPLE_INTERVAL_MS = 500;
/** A stdout line longer than this is not a progress line; it is skipped, not buffered. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Follows `log` from its start until the job's log is complete or `signal` aborts, calling
 * `record` for a sample at every phase change and at most every SAMPLE_INTERVAL_MS in between;
 * the last line of the job is always recorded, so the curve ends where the flash ended.
 */
export async function sampleFlash(opts: {
  log: OutputLog;
  dut: string;
  job: string;
  signal: AbortSignal;
  record: (sample: FlashProgressEntry) => void;
}): Promise<void> {
  let partial = '';
  let skipping = false;
  let last: FlashProgressEntry | undefined;
  let pending: FlashProgressEntry | undefined;
  const take = (line: string): void => {
    const progress = parseProgressLine(line);
    if (!progress) return;
    const { phase, bytesWritten, bytesRead, totalBytes, mbPerS } = progress;
    const sample: FlashProgressEntry = {
      at: Date.now(),
      kind: 'flash-progress',
      dut: opts.dut,
      job: opts.job,
      phase,
      bytesWritten,
      bytesRead,
      totalBytes,
      mbPerS,
    };
    if (!last || last.phase !== sample.phase || sample.at - last.at >= SAMPLE_INTERVAL_MS) {
      // A phase's last point ends its curve: without it a short phase would show no rate at all.
      if (pending && pending.phase !== sample.phase) opts.record(pending);
      opts.record(sample);
      last = sample;
      pending = undefined;
    } else pending = sample;
  };
  await followLog({
    log: opts.log,
    offset: 0,
    follow: true,
    signal: opts.signal,
    sink: {
      send(piece) {
        if (piece.stream !== 'stdout') return true;
        const lines = (partial + piece.data.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!skipping) take(line);
          skipping = false;
        }
        if (partial.length > MAX_LINE_BYTES) {
          partial = '';
          skipping = true;
        }
        return true;
      },
      drained: async () => undefined,
    },
  });
  if (partial !== '' && !skipping) take(partial);
  if (pending) opts.record(pending);
}
