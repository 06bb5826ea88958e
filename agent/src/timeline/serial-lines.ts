/**
 * The serial lines a DUT printed in a span, read back from its capture logs (the capture jobs'
 * output, kept in the state directory). Each capture's log is decoded from the last journal mark
 * at or before the span (or the live capture's time index), not from its start, and reading
 * stops at the span's end or at the size bound, whichever comes first.
 */

import { followSerial } from '../jig/serial-follow.js';
import type { SerialMonitor } from '../jig/serial-monitor.js';
import { isFinal } from '../jobs/job-state.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import type { CaptureEntry } from './journal-entry.js';
import type { SerialLineView } from './timeline.js';

/** A line longer than this is cut (a DUT that never prints "\n" must not build one huge line). */
export const MAX_LINE_CHARS = 16 * 1024;
/** What a line costs beside its text in the bound (time, offset, capture index, framing). */
const LINE_OVERHEAD_BYTES = 16;

/** The lines, the capture jobs they index into, and what could not be read. */
export interface SerialLinesResult {
  lines: SerialLineView[];
  captureJobs: string[];
  truncated: boolean;
  notes: string[];
}

/** Reads the lines of every capture of the DUT that overlaps [from, to], oldest first. */
export async function readSerialLines(opts: {
  supervisor: Supervisor;
  /** The DUT's capture entries up to `to`, in journal order. */
  captures: readonly CaptureEntry[];
  /** The capture running now, if any: its time index finds `from` without a mark. */
  live?: SerialMonitor;
  from: number;
  to: number;
  maxBytes: number;
}): Promise<SerialLinesResult> {
  const result: SerialLinesResult = { lines: [], captureJobs: [], truncated: false, notes: [] };
  let budget = opts.maxBytes;
  for (const [job, marks] of groupByJob(opts.captures)) {
    let view: JobView;
    try {
      view = opts.supervisor.get(job);
    } catch {
      if (marks.at(-1)!.at >= opts.from)
        result.notes.push(`the serial capture log of job ${job} is gone; its lines are missing`);
      continue;
    }
    const { record } = view;
    const endedAt = isFinal(record.state) ? (record.endedAt ?? record.createdAt) : Date.now();
    if (record.createdAt > opts.to || endedAt < opts.from) continue;
    let start = 0;
    for (const mark of marks) if (mark.at <= opts.from && mark.offset > start) start = mark.offset;
    if (opts.live?.jobId === job) start = Math.max(start, opts.live.seek({ sinceMs: opts.from }));
    const capture = result.captureJobs.push(job) - 1;
    const cutter = new LineCutter((line) => {
      const cost = Buffer.byteLength(line.text) + LINE_OVERHEAD_BYTES;
      if (cost > budget) return false;
      budget -= cost;
      result.lines.push({ ...line, capture });
      return true;
    });
    const stop = new AbortController();
    await followSerial({
      log: view.output(),
      from: start,
      skipUntilMs: opts.from,
      follow: false,
      signal: stop.signal,
      onRecord: (rec) => {
        if (stop.signal.aborted) return true;
        const fits =
          rec.at > opts.to
            ? false
            : rec.kind === 'chunk'
              ? cutter.push(rec.data, rec.offset, rec.at)
              : cutter.event(`${rec.event} ${rec.detail}`.trim(), rec.offset, rec.at);
        if (!fits) {
          if (rec.at <= opts.to) result.truncated = true;
          stop.abort();
        }
        return true;
      },
      drained: async () => undefined,
    });
    if (!result.truncated) cutter.flush();
    if (result.truncated) break;
  }
  return result;
}

/** Capture entries by capture job, in the order the jobs first appear. */
function groupByJob(entries: readonly CaptureEntry[]): Map<string, CaptureEntry[]> {
  const byJob = new Map<string, CaptureEntry[]>();
  for (const entry of entries) {
    const list = byJob.get(entry.job);
    if (list) list.push(entry);
    else byJob.set(entry.job, [entry]);
  }
  return byJob;
}

type Line = Omit<SerialLineView, 'capture'>;

/** Cuts decoded serial bytes into lines (CR LF stripped), each stamped where it began. */
class LineCutter {
  readonly #decoder = new TextDecoder('utf-8');
  readonly #emit: (line: Line) => boolean;
  #partial = '';
  #at = 0;
  #offset = 0;

  /** `emit` returns false when the line did not fit: nothing more is wanted. */
  constructor(emit: (line: Line) => boolean) {
    this.#emit = emit;
  }

  /** Adds one chunk record; false once a line did not fit. */
  push(data: Buffer, offset: number, at: number): boolean {
    const text = this.#decoder.decode(data, { stream: true });
    if (text === '') return true;
    if (this.#partial === '') {
      this.#at = at;
      this.#offset = offset;
    }
    const pieces = (this.#partial + text).split('\n');
    this.#partial = pieces.pop() ?? '';
    for (const piece of pieces) {
      if (!this.#line(piece)) return false;
      this.#at = at;
      this.#offset = offset;
    }
    if (this.#partial.length > MAX_LINE_CHARS) {
      const long = this.#partial;
      this.#partial = '';
      return this.#line(long);
    }
    return true;
  }

  /** A capture event, as a line of its own (the DUT's unfinished line goes on after it). */
  event(text: string, offset: number, at: number): boolean {
    return this.#emit({ at, offset, text, event: true });
  }

  /** Emits the unfinished last line, if any. */
  flush(): void {
    const rest = this.#partial + this.#decoder.decode();
    this.#partial = '';
    if (rest !== '') this.#line(rest);
  }

  #line(raw: string): boolean {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    return this.#emit({
      at: this.#at,
      offset: this.#offset,
      text: text.slice(0, MAX_LINE_CHARS),
      event: false,
    });
  }
}
