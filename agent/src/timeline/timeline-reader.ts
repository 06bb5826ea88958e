/**
 * Builds the timeline of a lease or a job from the run record: the lease index says which DUT
 * and when, the DUT's journal what happened there, the job records how each job ran, and the
 * capture logs what the DUT printed. Everything it returns is bounded (see the limits below), and
 * a lease stays reportable after it ended and after an agent restart.
 */
import { existsSync } from 'node:fs';
import { notFound } from '../../../protocol/src/errors.js';
import { AGENT_OWNER } from '../jig/job-keeper.js';
import type { JobRecord } from '../jobs/job-records.js';
import { isFinal } from '../jobs/job-state.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import {
  type CaptureEntry,
  type JournalEntry,
  type LeaseEntry,
  parseEntry,
  peekEntry,
} from './journal-entry.js';
import type { RunRecorder } from './run-recorder.js';
import { readSerialLines } from './serial-lines.js';
import type { JobRoleName, JobSpanView, LeaseSpanView, Timeline } from './timeline.js';
import { dutEvent, flashPoints, jobEvent, powerSpans, serialEvent } from './timeline-parts.js';

/** Serial text (plus a little per line) sent at most per timeline: the rest stays in the logs. */
export const MAX_SERIAL_BYTES = 5 * 1024 * 1024;
/** Events, jobs and flash points sent at most per timeline (a week-long lease can hold more). */
export const MAX_EVENTS = 20_000;
export const MAX_JOBS = 2000;
export const MAX_FLASH_POINTS = 10_000;

/** Reads timelines; one per agent, beside the recorder that writes the journals. */
export class TimelineReader {
  readonly #recorder: RunRecorder;
  readonly #supervisor: Supervisor;
  readonly #leases: LeaseManager;

  constructor(opts: { recorder: RunRecorder; supervisor: Supervisor; leases: LeaseManager }) {
    this.#recorder = opts.recorder;
    this.#supervisor = opts.supervisor;
    this.#leases = opts.leases;
  }

  /** The lease's DUT from its grant to its end (or now); NOT_FOUND for a lease never recorded. */
  async forLease(leaseId: string, includeSerial: boolean): Promise<Timeline> {
    const entries = this.#recorder.leaseIndex
      .lines()
      .filter((line) => line.includes(`"lease":${JSON.stringify(leaseId)}`))
      .map(parseEntry)
      .filter((e): e is LeaseEntry => e?.kind === 'lease' && e.lease === leaseId);
    const granted = entries.find((e) => e.change === 'granted');
    const ended = entries.find((e) => e.change === 'ended');
    const held = this.#leases.list().find((l) => l.id === leaseId);
    if (!granted && !held) {
      throw notFound(
        `no lease ${leaseId.slice(0, 64)} in the run record: unknown, or older than the record keeps`,
      );
    }
    const now = Date.now();
    const from = held?.acquiredAt ?? granted!.at;
    const to = ended?.at ?? now;
    const timeline = emptyTimeline({ leaseId, dut: held?.dut ?? granted!.dut, from, to, ongoing: !!held });
    if (!held && !ended) {
      timeline.notes.push(
        'the end of this lease was not recorded (the agent stopped without hearing it); the timeline runs to now',
      );
    }
    await this.#fillDut(timeline, includeSerial);
    return timeline;
  }

  /** The job's span, and its DUT's events in it if it had one; NOT_FOUND for an unknown job. */
  async forJob(jobId: string, includeSerial: boolean): Promise<Timeline> {
    const { record } = this.#supervisor.get(jobId);
    const ongoing = !isFinal(record.state);
    const timeline = emptyTimeline({
      jobId,
      dut: record.spec.dut ?? '',
      from: record.createdAt,
      to: ongoing ? Date.now() : (record.endedAt ?? record.createdAt),
      ongoing,
    });
    // The job's own start and end come from its record, at exactly the ends of the span (the
    // journal stamps them a moment after the record does).
    if (timeline.dut) await this.#fillDut(timeline, includeSerial, record);
    else {
      timeline.jobs.push(spanOf(record, 'command'));
      timeline.events.push(...jobEvent(record));
    }
    return timeline;
  }

  async #fillDut(t: Timeline, includeSerial: boolean, own?: JobRecord): Promise<void> {
    const journal = this.#recorder.journal(t.dut);
    const lines = journal.lines();
    const inSpan: Exclude<JournalEntry, CaptureEntry>[] = [];
    const captures: CaptureEntry[] = [];
    let powerBefore: JournalEntry | undefined;
    let oldest = Number.POSITIVE_INFINITY;
    for (const line of lines) {
      const head = peekEntry(line);
      if (!head) continue;
      oldest = Math.min(oldest, head.at);
      const wanted =
        (head.at >= t.from && head.at <= t.to) ||
        (head.kind === 'capture' && head.at <= t.to) ||
        (head.kind === 'power' && head.at < t.from);
      if (!wanted) continue;
      const entry = parseEntry(line);
      if (!entry) continue;
      if (entry.kind === 'capture') captures.push(entry);
      else if (head.at < t.from) powerBefore = entry;
      else inSpan.push(entry);
    }
    if (oldest > t.from && existsSync(journal.oldPath)) {
      t.notes.push(
        `the journal of ${t.dut} starts at ${new Date(oldest).toISOString()}: older events were rotated away`,
      );
    }
    const captureJobs = new Set(captures.map((c) => c.job));
    const roles = new Map<string, JobRoleName>();
    for (const e of inSpan) {
      if (e.kind === 'power') roles.set(e.job, 'power');
      else if (e.kind === 'flash') roles.set(e.job, 'flash');
    }
    const isCapture = (r: JobRecord): boolean =>
      captureJobs.has(r.id) || (r.owner === AGENT_OWNER && driverCommandOf(r) === 'serial');

    for (const e of inSpan) {
      if (e.kind === 'job' && (captureJobs.has(e.job) || e.job === own?.id)) continue;
      if (e.kind !== 'flash-progress') t.events.push(dutEvent(e));
    }
    if (own) t.events.push(...jobEvent(own));
    t.power = powerSpans(t.dut, powerBefore, inSpan, t.from, t.to);
    t.flash = flashPoints(inSpan);
    t.leases = this.#leaseSpans(t.dut, t.from, t.to);
    const records = this.#supervisor
      .records(
        (e) =>
          e.dut === t.dut &&
          e.createdAt <= t.to &&
          (isFinal(e.state) ? (e.endedAt ?? e.createdAt) : t.to) >= t.from,
      )
      .filter(
        (r) =>
          r.spec.dut === t.dut &&
          r.createdAt <= t.to &&
          (isFinal(r.state) ? (r.endedAt ?? r.createdAt) : t.to) >= t.from &&
          !isCapture(r),
      );
    // A DUT's long-lived power driver is not one span: each action it served is (its power event
    // holds who asked, when it began and when it was done).
    const drivers = new Set(records.filter((r) => driverCommandOf(r) === 'power-serve').map((r) => r.id));
    t.jobs = [
      ...records.filter((r) => !drivers.has(r.id)).map((r) => spanOf(r, roles.get(r.id) ?? roleOf(r))),
      ...inSpan.flatMap((e) =>
        e.kind === 'power' && drivers.has(e.job) && e.startedAt !== undefined
          ? [servedSpan(e, e.startedAt)]
          : [],
      ),
    ].sort((a, b) => a.createdAt - b.createdAt);

    if (includeSerial) {
      const serial = await readSerialLines({
        supervisor: this.#supervisor,
        captures,
        live: this.#recorder.jig?.list().find((d) => d.dut.name === t.dut)?.capture,
        from: t.from,
        to: t.to,
        maxBytes: MAX_SERIAL_BYTES,
      });
      t.serial = serial.lines;
      t.captureJobs = serial.captureJobs;
      t.serialTruncated = serial.truncated;
      t.notes.push(...serial.notes);
      if (serial.truncated) {
        t.notes.push(
          `serial lines stop at ${MAX_SERIAL_BYTES / 1024 / 1024} MiB; read the rest with jigctl serial tail`,
        );
      }
      for (const line of serial.lines)
        if (line.event) t.events.push(serialEvent(t.dut, line, serial.captureJobs));
    }
    t.events.sort((a, b) => a.at - b.at);
    this.#bound(t);
  }

  /** Leases of `dut` that overlap the span, from the lease index and the leases held now. */
  #leaseSpans(dut: string, from: number, to: number): LeaseSpanView[] {
    const spans = new Map<string, LeaseSpanView>();
    for (const line of this.#recorder.leaseIndex.lines()) {
      if (!line.includes(`"dut":${JSON.stringify(dut)}`)) continue;
      const e = parseEntry(line);
      if (e?.kind !== 'lease' || e.dut !== dut) continue;
      if (e.change === 'granted') {
        spans.set(e.lease, { lease: e.lease, dut, holder: e.holder, token: e.token, acquiredAt: e.at });
      } else {
        const span = spans.get(e.lease);
        if (span) Object.assign(span, { endedAt: e.at, reason: e.reason });
      }
    }
    for (const held of this.#leases.list()) {
      if (held.dut !== dut || spans.has(held.id)) continue;
      spans.set(held.id, {
        lease: held.id,
        dut,
        holder: held.holder,
        token: held.token,
        acquiredAt: held.acquiredAt,
      });
    }
    const heldIds = new Set(this.#leases.list().map((l) => l.id));
    return [...spans.values()].filter(
      (s) => s.acquiredAt <= to && (s.endedAt ?? (heldIds.has(s.lease) ? to : s.acquiredAt)) >= from,
    );
  }

  #bound(t: Timeline): void {
    if (t.events.length > MAX_EVENTS || t.jobs.length > MAX_JOBS || t.flash.length > MAX_FLASH_POINTS) {
      t.eventsTruncated = true;
      t.notes.push(
        `the span holds more than the timeline sends (${MAX_EVENTS} events, ${MAX_JOBS} jobs, ${MAX_FLASH_POINTS} flash points); the first ones are kept`,
      );
      t.events = t.events.slice(0, MAX_EVENTS);
      t.jobs = t.jobs.slice(0, MAX_JOBS);
      t.flash = t.flash.slice(0, MAX_FLASH_POINTS);
    }
  }
}

function emptyTimeline(
  head: Partial<Timeline> & Pick<Timeline, 'dut' | 'from' | 'to' | 'ongoing'>,
): Timeline {
  return {
    leaseId: '',
    jobId: '',
    events: [],
    jobs: [],
    power: [],
    leases: [],
    flash: [],
    serial: [],
    captureJobs: [],
    serialTruncated: false,
    eventsTruncated: false,
    notes: [],
    ...head,
  };
}

function spanOf(r: JobRecord, role: JobRoleName): JobSpanView {
  return {
    job: r.id,
    owner: r.owner,
    command: [r.spec.command, ...r.spec.args].join(' '),
    name: jobName(r, role),
    dut: r.spec.dut ?? '',
    role,
    state: r.state,
    exitCode: r.exitCode,
    signal: r.signal,
    stopReason: r.stopReason,
    error: r.error,
    stderrTail: r.stderrTail,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
  };
}

/** One power action served by a DUT's long-lived driver, as a job span of its own. */
function servedSpan(
  e: { dut: string; action: string; job: string; by: string; at: number; error?: string },
  startedAt: number,
): JobSpanView {
  return {
    job: e.job,
    owner: e.by,
    command: `jig-driver power-serve (${e.action})`,
    name: `power ${e.action}`,
    dut: e.dut,
    role: 'power',
    state: 'exited',
    // A failed action reads like the failed per-action job it used to be, its reason as stderr.
    exitCode: e.error === undefined ? 0 : 1,
    ...(e.error === undefined ? {} : { stderrTail: e.error }),
    createdAt: startedAt,
    startedAt,
    endedAt: e.at,
  };
}

/** The `jig-driver` subcommand a job runs (power, flash, serial), if it runs jig-driver. */
function driverCommandOf(r: JobRecord): string | undefined {
  const words = [r.spec.command, ...r.spec.args];
  const at = words.findIndex((w) => /(^|\/)jig-driver(\.js)?$/.test(w));
  return at >= 0 ? words[at + 1] : undefined;
}

/**
 * What a job did, for people: its title when the agent gave it one, the driver's action for a
 * record from before titles ("power off"), else the user's command line, quoted as a shell would
 * need it.
 */
function jobName(r: JobRecord, role: JobRoleName): string {
  if (r.title) return r.title;
  const words = [r.spec.command, ...r.spec.args];
  const at = words.findIndex((w) => /(^|\/)jig-driver(\.js)?$/.test(w));
  if (at >= 0) {
    const sub = words[at + 1] ?? '';
    return sub === 'power' ? `power ${words[at + 2] ?? ''}`.trim() : sub || role;
  }
  return words.map(shellWord).join(' ');
}

function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
}

/** A job's role when the journal does not say (a power switch that failed publishes nothing). */
function roleOf(r: JobRecord): JobRoleName {
  const sub = driverCommandOf(r);
  if (sub === 'power' || sub === 'power-serve') return 'power';
  return sub === 'flash' ? sub : 'command';
}
