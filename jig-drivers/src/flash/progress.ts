/**
 * Flash progress as JSON lines on the job's stdout, which the agent turns into progress events
 * and the client into a progress bar:
 *   {"flash":{"phase":"write","bytesWritten":N,"bytesRead":N,"totalBytes":N|null,"mbPerS":N,"etaS":N|null}}
 * One line at every phase change, and at most one per 250 ms in between.
 */

/** The steps of a flash, in order. */
export type FlashPhase = 'host' | 'wait-device' | 'write' | 'sync' | 'verify' | 'dut' | 'done';

/**
 * One progress report. In `write`, bytesRead counts decompressed image bytes and totalBytes is the
 * image size; in `verify`, bytesRead counts bytes read back and totalBytes is what was written.
 * mbPerS (10^6 bytes/s) is bytesRead's rate since the phase began; phases that move no data
 * report 0 and etaS null; `done` reports etaS 0.
 */
export interface FlashProgress {
  /** The current phase. */
  phase: FlashPhase;
  /** Bytes written to the medium so far. */
  bytesWritten: number;
  /** Bytes read so far in this phase (see above). */
  bytesRead: number;
  /** What bytesRead runs up to, when known. */
  totalBytes: number | null;
  /** Rate of bytesRead in this phase, MB/s, one decimal. */
  mbPerS: number;
  /** Seconds left in this phase, when the total and a rate are known. */
  etaS: number | null;
}

/** Shortest gap between two lines within one phase. */
export const PROGRESS_INTERVAL_MS = 250;

/** The stdout line for one report. */
export function progressLine(progress: FlashProgress): string {
  return `${JSON.stringify({ flash: progress })}\n`;
}

/** Starts every progress line (and no other line the flasher prints). */
export const PROGRESS_PREFIX = '{"flash":';

/**
 * The report in one stdout line of a flash job, or undefined for any other line (or a torn one).
 * Numbers that are missing, negative or not finite read as 0, so a reader never plots garbage.
 */
export function parseProgressLine(line: string): FlashProgress | undefined {
  if (!line.startsWith(PROGRESS_PREFIX)) return undefined;
  let flash: Partial<Record<keyof FlashProgress, unknown>> | undefined;
  try {
    ({ flash } = JSON.parse(line) as { flash?: Partial<Record<keyof FlashProgress, unknown>> });
  } catch {
    return undefined;
  }
  if (typeof flash?.phase !== 'string') return undefined;
  return {
    phase: flash.phase as FlashPhase,
    bytesWritten: count(flash.bytesWritten),
    bytesRead: count(flash.bytesRead),
    totalBytes: typeof flash.totalBytes === 'number' ? count(flash.totalBytes) : null,
    mbPerS: count(flash.mbPerS),
    etaS: typeof flash.etaS === 'number' ? count(flash.etaS) : null,
  };
}

function count(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : 0;
}

/** Counters a phase change or an update may set. */
export interface ProgressCounters {
  /** See `FlashProgress.bytesRead`. */
  bytesRead?: number;
  /** See `FlashProgress.bytesWritten`. */
  bytesWritten?: number;
  /** See `FlashProgress.totalBytes`. */
  totalBytes?: number | null;
  /**
   * False when totalBytes is an estimate (gzip's ISIZE is the size modulo 4 GiB): once more bytes
   * than that are read, the total becomes unknown instead of an ETA that goes negative.
   */
  totalExact?: boolean;
}

/** Turns counter updates into throttled progress reports. */
export class ProgressTracker {
  private phaseName: FlashPhase = 'host';
  private bytesRead = 0;
  private bytesWritten = 0;
  private totalBytes: number | null = null;
  private totalExact = true;
  private phaseStart: number;
  private readAtPhaseStart = 0;
  private lastEmit = Number.NEGATIVE_INFINITY;

  /** Reports through `emit`; `now` (ms) is injectable so tests need no real time. */
  constructor(
    private readonly emit: (progress: FlashProgress) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.phaseStart = now();
  }

  /** Enters `phase` (with new counters, if given) and reports at once. */
  phase(phase: FlashPhase, counters: ProgressCounters = {}): void {
    this.phaseName = phase;
    this.set(counters);
    this.phaseStart = this.now();
    this.readAtPhaseStart = this.bytesRead;
    this.report();
  }

  /** Updates counters; reports when the last report is at least PROGRESS_INTERVAL_MS old. */
  update(counters: ProgressCounters): void {
    this.set(counters);
    if (this.now() - this.lastEmit >= PROGRESS_INTERVAL_MS) this.report();
  }

  /** The report as of now. */
  snapshot(): FlashProgress {
    const seconds = (this.now() - this.phaseStart) / 1000;
    const moved = this.bytesRead - this.readAtPhaseStart;
    const rate = seconds > 0 ? moved / seconds : 0;
    let etaS: number | null = null;
    if (this.phaseName === 'done') etaS = 0;
    else if (this.totalBytes !== null && rate > 0) {
      etaS = Math.ceil(Math.max(this.totalBytes - this.bytesRead, 0) / rate);
    }
    return {
      phase: this.phaseName,
      bytesWritten: this.bytesWritten,
      bytesRead: this.bytesRead,
      totalBytes: this.totalBytes,
      mbPerS: Math.round(rate / 1e5) / 10,
      etaS,
    };
  }

  private set(counters: ProgressCounters): void {
    if (counters.bytesRead !== undefined) this.bytesRead = counters.bytesRead;
    if (counters.bytesWritten !== undefined) this.bytesWritten = counters.bytesWritten;
    if (counters.totalBytes !== undefined) this.totalBytes = counters.totalBytes;
    if (counters.totalExact !== undefined) this.totalExact = counters.totalExact;
    if (!this.totalExact && this.totalBytes !== null && this.bytesRead > this.totalBytes)
      this.totalBytes = null;
  }

  private report(): void {
    this.lastEmit = this.now();
    this.emit(this.snapshot());
  }
}
