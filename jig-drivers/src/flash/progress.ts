/**
 * Flash progress: counter updates from the flasher become throttled reports, which `jig-driver
 * flash` prints as `{"flash":{…}}` lines (protocol's driver-events.ts) for the agent's run record
 * and metrics and the client's progress bar. One report at every phase change, and at most one
 * per 250 ms in between.
 */
import type { FlashPhase, FlashProgress } from '../../../protocol/src/driver-events.js';

/** Shortest gap between two lines within one phase. */
export const PROGRESS_INTERVAL_MS = 250;

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
