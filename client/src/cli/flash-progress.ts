/**
 * What `jigctl flash` shows while it works. On a terminal: one bar, phase by phase, whose last
 * frame reads 100% with the average rate and the total time. Elsewhere (CI logs): one line per
 * phase once it ends, with what it moved and how long it took. On a first flash the upload goes on
 * beside the flash job (flash-client.ts): once the job reports, the bar follows the job, and the
 * upload gets its line when it completes.
 */
import { SingleBar } from 'cli-progress';
import type { FlashEvent } from '../flash-client.js';
import { humanDuration } from './format.js';

const MiB = 1024 * 1024;

/** The phases in words (hash and upload are the client's, the rest the flash job's). */
const PHASE_NAMES: Readonly<Record<string, string>> = {
  hash: 'hash',
  upload: 'upload',
  host: 'medium to host',
  'wait-device': 'wait for medium',
  write: 'write',
  sync: 'sync',
  verify: 'verify',
  dut: 'medium to DUT',
};

/** The widest phase name, so the per-phase lines line up. */
const NAME_WIDTH = Math.max(...Object.values(PHASE_NAMES).map((n) => n.length));

interface Phase {
  name: string;
  startedAt: number;
  done: number;
  total: number | null;
  /** Bytes written to the medium (write phase), when fewer than the image's (zeros skipped). */
  written?: number;
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
const rate = (bytes: number, ms: number): string =>
  `${(bytes / 1e6 / Math.max(ms / 1000, 0.001)).toFixed(1)} MB/s`;

/** Follows a flash's events and draws them; `finish()` draws the last frame or line. */
export class FlashProgressView {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #startedAt = Date.now();
  readonly #bar: SingleBar;
  #barStarted = false;
  #phase: Phase | undefined;
  /** The image's size, once a phase that reads it all has reported it. */
  #imageBytes = 0;
  /** True once the flash job has reported: upload progress then runs beside it. */
  #flashing = false;
  /** The upload, once it runs beside the flash job. */
  #upload: Phase | undefined;

  /** Draws on `out`; a bar when `tty`, phase lines otherwise. */
  constructor(out: NodeJS.WriteStream, tty: boolean) {
    this.#out = out;
    this.#tty = tty;
    this.#bar = new SingleBar({
      format: '{phase} [{bar}] {percentage}% | {amount} | {rate} | {time}',
      stream: out,
      hideCursor: true,
      noTTYOutput: false,
    });
  }

  /** One event of the upload or the flash job. */
  onEvent(e: FlashEvent): void {
    if (e.type === 'transfer') {
      if (this.#flashing && e.progress.phase === 'upload')
        this.#uploadBeside(e.progress.done, e.progress.total);
      else this.#update(e.progress.phase, e.progress.done, e.progress.total);
      return;
    }
    const p = e.progress;
    if (!this.#flashing) {
      this.#flashing = true;
      // An upload still under way is not over: it goes on beside the job, its line comes later.
      if (this.#phase?.name === 'upload' && this.#phase.done < (this.#phase.total ?? 0)) {
        this.#upload = this.#phase;
        this.#phase = undefined;
      }
    }
    if (p.phase === 'done') return;
    // In write, bytesRead counts image bytes and runs up to the image size; bytesWritten (the whole
    // flash's) skips zeros. Other phases than write and verify move no data.
    const moves = p.phase === 'write' || p.phase === 'verify';
    this.#update(p.phase, moves ? p.bytesRead : 0, moves ? p.totalBytes : null, p.bytesWritten);
  }

  #update(name: string, done: number, total: number | null, written?: number): void {
    const now = Date.now();
    if (this.#phase?.name !== name) {
      // The job reports a phase's start and then at most every 250 ms, so a short phase's last
      // report may predate its end: a phase that ended did all it had to.
      const ended = this.#phase;
      if (ended?.total) ended.done = ended.total;
      if (ended?.name === 'write' && written !== undefined) ended.written = written;
      this.#endPhase(now);
      this.#phase = { name, startedAt: now, done, total };
    }
    const phase = this.#phase!;
    phase.done = done;
    phase.total = total;
    if (name === 'write' && written !== undefined) phase.written = written;
    if (name === 'hash' && total) this.#imageBytes = total;
    // An image still arriving has no size yet: what the write has read so far is the best one.
    if (name === 'write') this.#imageBytes = total ?? done;
    if (!this.#tty) return;
    const elapsed = now - phase.startedAt;
    const left = total && done > 0 && elapsed > 0 ? ((total - done) * elapsed) / done : null;
    this.#draw(name, done, total, {
      rate: done > 0 ? rate(done, elapsed) : '-',
      time: left === null ? 'ETA -' : `ETA ${humanDuration(left)}`,
    });
  }

  /** Upload progress while the flash job runs; without a terminal, its line once it is complete. */
  #uploadBeside(done: number, total: number): void {
    const upload = this.#upload;
    if (!upload || upload.done >= (upload.total ?? 0)) return;
    upload.done = done;
    if (done < total || this.#tty) return;
    const took = Date.now() - upload.startedAt;
    const name = PHASE_NAMES.upload!.padEnd(NAME_WIDTH);
    this.#out.write(
      `jigctl: ${name}  ${mib(done)} in ${humanDuration(took)} (${rate(done, took)}), beside the flash\n`,
    );
  }

  #draw(name: string, done: number, total: number | null, text: { rate: string; time: string }): void {
    // A phase that moves no data (switching the mux, sync) shows an empty bar and no amounts.
    const totalMiB = total ? Math.max(1, Math.round(total / MiB)) : 1;
    const doneMiB = total ? Math.round(done / MiB) : 0;
    const values = {
      phase: (PHASE_NAMES[name] ?? name).padEnd(NAME_WIDTH),
      amount: total ? `${doneMiB}/${totalMiB} MiB` : '-',
      ...text,
    };
    if (!this.#barStarted) {
      this.#bar.start(totalMiB, doneMiB, values);
      this.#barStarted = true;
    } else {
      this.#bar.setTotal(totalMiB);
      this.#bar.update(doneMiB, values);
    }
  }

  /** Without a terminal: the line of the phase that just ended. */
  #endPhase(now: number): void {
    const phase = this.#phase;
    if (!phase || this.#tty) return;
    const took = now - phase.startedAt;
    const name = (PHASE_NAMES[phase.name] ?? phase.name).padEnd(NAME_WIDTH);
    const moved =
      phase.done > 0 ? `${mib(phase.done)} in ${humanDuration(took)} (${rate(phase.done, took)})` : '';
    const skipped =
      phase.written !== undefined && phase.written < phase.done
        ? `; ${mib(phase.written)} written, zeros skipped`
        : '';
    this.#out.write(`jigctl: ${name}  ${moved ? `${moved}${skipped}` : humanDuration(took)}\n`);
  }

  /** The flash succeeded: the last frame at 100% (or the last phase line) and the totals. */
  finish(): void {
    const now = Date.now();
    const took = now - this.#startedAt;
    const bytes = this.#imageBytes;
    if (this.#tty) {
      if (!this.#barStarted) return;
      this.#phase = { name: 'done', startedAt: now, done: bytes, total: bytes };
      this.#draw('done', bytes, bytes, {
        rate: `${rate(bytes, took)} average`,
        time: `${humanDuration(took)} total`,
      });
      this.#bar.stop();
      return;
    }
    this.#endPhase(now);
    this.#out.write(
      `jigctl: ${'done'.padEnd(NAME_WIDTH)}  ${mib(bytes)} image in ${humanDuration(took)} total\n`,
    );
  }

  /** The flash failed or was interrupted: leave the terminal as it was. */
  stop(): void {
    if (this.#barStarted) this.#bar.stop();
  }
}
