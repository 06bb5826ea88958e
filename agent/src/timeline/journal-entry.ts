/**
 * What one line of a DUT's run journal (`<state>/records/<dut>.jsonl`) holds. Every entry starts
 * with `at` (epoch ms) and `kind`, in that order, so a reader can skip lines outside a span by
 * their first bytes without parsing them. The lease index (`records/leases.jsonl`) holds the
 * `lease` entries of every DUT, so a lease id resolves to its DUT and span after it ended.
 */
import type { AgentEvent } from '../events/agent-events.js';
import type { LeaseEnd } from '../leases/lease-manager.js';

/** A flash job's progress line, as the recorder read it from the job's output. */
export interface FlashProgressEntry {
  at: number;
  kind: 'flash-progress';
  dut: string;
  job: string;
  phase: string;
  bytesWritten: number;
  bytesRead: number;
  totalBytes: number | null;
  mbPerS: number;
}

/** A lease was granted or ended (renewals are not journaled: they change no timeline). */
export interface LeaseEntry {
  at: number;
  kind: 'lease';
  dut: string;
  lease: string;
  change: 'granted' | 'ended';
  holder: string;
  token: number;
  reason?: LeaseEnd;
}

/**
 * Where the DUT's serial log stood: a capture job started (`started`, offset 0), or a mark of a
 * running capture's record boundary at a moment a span may start (a lease grant, a job start, the
 * recorder's own start), so a reader decodes the capture log from there, not from its start.
 */
export interface CaptureEntry {
  at: number;
  kind: 'capture';
  dut: string;
  job: string;
  offset: number;
  why: 'started' | 'mark';
}

/** A job state change of a job with a DUT. */
export type JobEntry = Extract<AgentEvent, { kind: 'job' }> & { dut: string };

/** Bus events that concern a DUT, as they were published. */
export type DutEventEntry = Exclude<AgentEvent, { kind: 'job' }> | JobEntry;

/** One journal line. */
export type JournalEntry = DutEventEntry | FlashProgressEntry | LeaseEntry | CaptureEntry;

/** The kinds a journal line may have. */
export type JournalKind = JournalEntry['kind'];

/** `{"at":123,"kind":"power",…`: the time and kind of a line, without parsing it all. */
const HEAD = /^\{"at":(\d+),"kind":"([a-z-]+)"/;

/** The time and kind of a journal line, or undefined for a line that is not an entry. */
export function peekEntry(line: string): { at: number; kind: string } | undefined {
  const head = HEAD.exec(line);
  return head ? { at: Number(head[1]), kind: head[2]! } : undefined;
}

/** Parses a journal line; undefined for a damaged one (a crash can cut the last line short). */
export function parseEntry(line: string): JournalEntry | undefined {
  try {
    const entry = JSON.parse(line) as JournalEntry;
    return typeof entry.at === 'number' && typeof entry.kind === 'string' ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** The entry for a bus event, with `at` and `kind` first; undefined for events without a DUT. */
export function entryOfEvent(event: AgentEvent): DutEventEntry | undefined {
  if (event.kind === 'job' && event.dut === undefined) return undefined;
  const { at, kind, ...rest } = event;
  return { at, kind, ...rest } as DutEventEntry;
}
