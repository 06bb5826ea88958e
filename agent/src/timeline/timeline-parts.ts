/**
 * Journal entries turned into timeline parts: one event per entry (with a line for people),
 * power intervals from the switches, and flash points with the throughput between them.
 */
import type { JobRecord } from '../jobs/job-records.js';
import type { FlashProgressEntry, JournalEntry } from './journal-entry.js';
import type { FlashPoint, PowerSpan, SerialLineView, TimelineEvent } from './timeline.js';

type EventEntry = Exclude<JournalEntry, FlashProgressEntry | { kind: 'capture' }>;

/** Field values as text; undefined ones are left out. */
function fields(
  values: Record<string, string | number | boolean | null | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values))
    if (value !== undefined && value !== null) out[key] = String(value);
  return out;
}

const short = (id: string): string => id.slice(0, 8);

/** The event of one journal entry. */
export function dutEvent(e: EventEntry): TimelineEvent {
  const base = { at: e.at, dut: e.dut };
  switch (e.kind) {
    case 'power':
      return {
        ...base,
        kind: 'power',
        fields: fields({ action: e.action, state: e.state, job: e.job, by: e.by, error: e.error }),
        summary:
          e.error === undefined
            ? `power ${e.action}: ${e.state} (by ${e.by}, job ${short(e.job)})`
            : `power ${e.action} failed (by ${e.by}, job ${short(e.job)}): ${e.error}`,
      };
    case 'flash':
      return {
        ...base,
        kind: 'flash',
        fields: fields({ phase: e.phase, job: e.job, image: e.image }),
        summary: `flash ${e.phase} (image ${e.image.slice(0, 12)}, job ${short(e.job)})`,
      };
    case 'job':
      return {
        ...base,
        kind: 'job',
        fields: fields({
          job: e.job,
          owner: e.owner,
          command: e.command,
          title: e.title,
          state: e.state,
          exit_code: e.exitCode,
          signal: e.signal,
          stop_reason: e.stopReason,
        }),
        summary: `job ${short(e.job)} ${e.state}${outcomeText(e)}: ${(e.title ?? e.command).slice(0, 200)} (${e.owner})`,
      };
    case 'expect':
      return {
        ...base,
        kind: 'expect',
        fields: fields({
          pattern: e.pattern,
          by: e.by,
          matched: e.matched,
          line: e.line,
          line_offset: e.lineOffset,
        }),
        summary: e.matched
          ? `expect /${e.pattern}/ matched: ${e.line ?? ''}`
          : `expect /${e.pattern}/ did not match (by ${e.by})`,
      };
    case 'exec':
      return {
        ...base,
        kind: 'exec',
        fields: fields({
          command: e.command,
          via: e.via,
          by: e.by,
          exit_code: e.exitCode,
          timed_out: e.timedOut,
          duration_ms: e.durationMs,
        }),
        summary: `exec${e.via ? ` via ${e.via}` : ''} ${e.command.slice(0, 200)}: ${e.timedOut ? 'timed out' : `exit ${e.exitCode}`} (${e.durationMs} ms, by ${e.by})`,
      };
    case 'goto':
      return {
        ...base,
        kind: 'state',
        fields: fields({
          goal: e.goal,
          step: e.step,
          detail: e.detail,
          by: e.by,
          duration_ms: e.durationMs,
          ok: e.ok,
        }),
        summary: `goto ${e.goal}: ${e.step}${e.ok ? '' : ' failed'}${e.detail ? ` (${e.detail})` : ''} (${e.durationMs} ms, by ${e.by})`,
      };
    case 'ssh':
      return {
        ...base,
        kind: 'ssh',
        fields: fields({ change: e.change, detail: e.detail }),
        summary: `ssh ${e.change.replaceAll('-', ' ')}: ${e.detail.slice(0, 300)}`,
      };
    case 'health':
      return {
        ...base,
        kind: 'health',
        fields: fields({ state: e.state, reason: e.reason }),
        summary: `health ${e.state}${e.reason ? `: ${e.reason}` : ''}`,
      };
    case 'lease':
      return {
        ...base,
        kind: 'lease',
        fields: fields({
          lease: e.lease,
          change: e.change,
          holder: e.holder,
          token: e.token,
          reason: e.reason,
        }),
        // No id in the text: a summary reads the same to everyone, and an id is its holder's (issue 11).
        summary: `lease ${e.change === 'granted' ? 'granted to' : `${e.reason ?? 'ended'}, held by`} ${e.holder} (token ${e.token})`,
      };
  }
}

function outcomeText(e: { exitCode?: number; signal?: string; stopReason?: string }): string {
  if (e.signal) return ` by ${e.signal}`;
  if (e.stopReason) return ` (${e.stopReason})`;
  return e.exitCode !== undefined ? ` with ${e.exitCode}` : '';
}

/** Start and end events of a job without a DUT, from its record (it has no journal). */
export function jobEvent(r: JobRecord): TimelineEvent[] {
  const command = [r.spec.command, ...r.spec.args].join(' ');
  const event = (
    at: number,
    state: string,
    end: { exitCode?: number; signal?: string; stopReason?: string },
  ) => ({
    at,
    kind: 'job' as const,
    dut: r.spec.dut ?? '',
    fields: fields({
      job: r.id,
      owner: r.owner,
      command,
      title: r.title,
      state,
      exit_code: end.exitCode,
      signal: end.signal,
      stop_reason: end.stopReason,
    }),
    summary: `job ${short(r.id)} ${state}${outcomeText(end)}: ${(r.title ?? command).slice(0, 200)} (${r.owner})`,
  });
  const events: TimelineEvent[] = [
    event(r.startedAt ?? r.createdAt, r.startedAt ? 'running' : 'pending', {}),
  ];
  if (r.endedAt !== undefined) events.push(event(r.endedAt, r.state, r));
  return events;
}

/** A serial capture event (the port went away, came back, …) as a timeline event. */
export function serialEvent(dut: string, line: SerialLineView, captureJobs: string[]): TimelineEvent {
  return {
    at: line.at,
    kind: 'serial',
    dut,
    fields: fields({
      event: line.text.split(' ')[0],
      detail: line.text,
      capture_job: captureJobs[line.capture],
    }),
    summary: `serial ${line.text}`,
  };
}

/**
 * Power intervals over [from, to]: the state the last switch before the span left, then one
 * interval per switch in the span ('unknown' before any switch is known).
 */
export function powerSpans(
  dut: string,
  before: JournalEntry | undefined,
  inSpan: readonly JournalEntry[],
  from: number,
  to: number,
): PowerSpan[] {
  const spans: PowerSpan[] = [];
  let current: PowerSpan =
    before?.kind === 'power'
      ? { dut, from, to, state: before.state, job: before.job, by: before.by }
      : { dut, from, to, state: 'unknown', job: '', by: '' };
  for (const e of inSpan) {
    if (e.kind !== 'power') continue;
    if (e.at > current.from) spans.push({ ...current, to: e.at });
    current = { dut, from: e.at, to, state: e.state, job: e.job, by: e.by };
  }
  spans.push(current);
  return spans;
}

/** Phases that move data: their rate is worth drawing up to their last byte. */
const MOVING = new Set(['write', 'verify']);

/**
 * The flash points in the span, each with the rate since the previous one of its job and phase.
 * A phase's first line carries the counters the previous phase ended with, so a phase that moved
 * data also gets a point at its end: a write shorter than one progress interval still shows its
 * rate.
 */
export function flashPoints(inSpan: readonly JournalEntry[]): FlashPoint[] {
  const points: FlashPoint[] = [];
  const previous = new Map<string, FlashProgressEntry>();
  const point = (e: FlashProgressEntry, phase: string, rate: number): FlashPoint => ({
    at: e.at,
    job: e.job,
    phase,
    bytesWritten: e.bytesWritten,
    bytesRead: e.bytesRead,
    totalBytes: e.totalBytes,
    mbPerS: Math.round(rate * 10) / 10,
    phaseMbPerS: e.mbPerS,
  });
  const rateOf = (a: FlashProgressEntry, b: FlashProgressEntry): number =>
    Math.max(0, b.bytesRead - a.bytesRead) / ((b.at - a.at) / 1000) / 1e6;
  for (const e of inSpan) {
    if (e.kind !== 'flash-progress') continue;
    const prev = previous.get(e.job);
    if (prev && prev.phase === e.phase) {
      points.push(point(e, e.phase, e.at > prev.at ? rateOf(prev, e) : e.mbPerS));
    } else {
      if (prev && MOVING.has(prev.phase) && e.bytesRead >= prev.bytesRead && e.at > prev.at)
        points.push(point(e, prev.phase, rateOf(prev, e)));
      points.push(point(e, e.phase, e.mbPerS));
    }
    previous.set(e.job, e);
  }
  return points;
}
