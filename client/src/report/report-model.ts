/**
 * A timeline from the agent, turned into what the report draws: times in epoch ms, event kinds
 * and job outcomes as the names the page's `data-kind` / `data-outcome` attributes carry.
 */

import {
  JobRole,
  type GetTimelineResponse as Timeline,
  TimelineEventKind,
} from '../../../protocol/gen/jiglet/v1/records.js';
import type { TestCase, TestCaseStatus } from '../../../protocol/src/test-cases.js';

/** The kinds a browser test can find in the page (`data-kind`). */
export type ReportKind =
  | 'power'
  | 'flash'
  | 'job'
  | 'expect'
  | 'lease'
  | 'health'
  | 'serial'
  | 'exec'
  | 'state';

/** How a job ended, for its colour. */
export type Outcome = 'succeeded' | 'failed' | 'stopped' | 'running';

/** One marker or event-list row. */
export interface ReportEvent {
  at: number;
  kind: ReportKind;
  summary: string;
  fields: Record<string, string>;
}

/** One job row. */
export interface ReportJob {
  id: string;
  /** What it did ("power on", "flash os.img", the user's command line). */
  label: string;
  command: string;
  owner: string;
  role: 'command' | 'power' | 'flash';
  state: string;
  outcome: Outcome;
  detail: string;
  from: number;
  to: number;
  /** The end of its stderr when it did not succeed ('' otherwise). */
  stderrTail: string;
}

/** One test case placed on the timeline. */
export interface ReportCase {
  suite: string;
  name: string;
  status: TestCaseStatus;
  message: string;
  durationMs: number;
  from: number;
  to: number;
}

/** Everything the report shows. */
export interface ReportModel {
  subject: string;
  dut: string;
  from: number;
  to: number;
  ongoing: boolean;
  events: ReportEvent[];
  jobs: ReportJob[];
  power: { dut: string; from: number; to: number; state: string; by: string }[];
  leases: { id: string; holder: string; token: string; from: number; to: number; ended: string }[];
  flash: {
    at: number;
    job: string;
    phase: string;
    mbPerS: number;
    bytesWritten: number;
    totalBytes: number;
  }[];
  serial: { at: number; offset: string; capture: string; text: string; event: boolean }[];
  serialTruncated: boolean;
  notes: string[];
  cases: ReportCase[];
}

/** Test cases of one run, laid out back to back from `from` (JUnit gives durations, not times). */
export interface TestCaseRun {
  from: number;
  cases: readonly TestCase[];
}

/** Most test cases drawn; the rest are counted in a note. */
export const MAX_REPORT_CASES = 2000;

const KINDS: Partial<Record<TimelineEventKind, ReportKind>> = {
  [TimelineEventKind.TIMELINE_EVENT_KIND_POWER]: 'power',
  [TimelineEventKind.TIMELINE_EVENT_KIND_FLASH]: 'flash',
  [TimelineEventKind.TIMELINE_EVENT_KIND_JOB]: 'job',
  [TimelineEventKind.TIMELINE_EVENT_KIND_EXPECT]: 'expect',
  [TimelineEventKind.TIMELINE_EVENT_KIND_LEASE]: 'lease',
  [TimelineEventKind.TIMELINE_EVENT_KIND_HEALTH]: 'health',
  [TimelineEventKind.TIMELINE_EVENT_KIND_SERIAL]: 'serial',
  [TimelineEventKind.TIMELINE_EVENT_KIND_EXEC]: 'exec',
  // Host key changes and copies are marks beside the commands run on the DUT.
  [TimelineEventKind.TIMELINE_EVENT_KIND_SSH]: 'exec',
  [TimelineEventKind.TIMELINE_EVENT_KIND_STATE]: 'state',
};

const ROLES: Partial<Record<JobRole, ReportJob['role']>> = {
  [JobRole.JOB_ROLE_POWER]: 'power',
  [JobRole.JOB_ROLE_FLASH]: 'flash',
};

/** The model of a timeline; `now` ends what is still running. */
export function reportModel(t: Timeline, now = Date.now(), runs: readonly TestCaseRun[] = []): ReportModel {
  const from = t.from?.getTime() ?? now;
  const to = Math.max(t.to?.getTime() ?? now, from);
  const notes = [...t.notes];
  const cases: ReportCase[] = [];
  let left = 0;
  for (const run of runs) {
    let at = run.from;
    for (const c of run.cases) {
      if (cases.length >= MAX_REPORT_CASES) {
        left++;
        continue;
      }
      cases.push({ ...c, from: at, to: at + c.durationMs });
      at += c.durationMs;
    }
  }
  if (left > 0) notes.push(`${left} more test cases are not drawn; jigctl queue results lists them all`);
  return {
    cases,
    subject: t.leaseId ? `lease ${t.leaseId}` : `job ${t.jobId}`,
    dut: t.dut,
    from,
    to,
    ongoing: t.ongoing,
    events: t.events.flatMap((e) => {
      const kind = KINDS[e.kind];
      return kind ? [{ at: e.at?.getTime() ?? from, kind, summary: e.summary, fields: e.fields }] : [];
    }),
    jobs: t.jobs.map((j) => {
      const outcome = outcomeOf(j.state, j.exitCode);
      const start = j.started?.getTime() ?? j.created?.getTime() ?? from;
      return {
        id: j.jobId,
        label: j.name || `${ROLES[j.role] ?? 'job'} ${j.jobId.slice(0, 8)}`,
        stderrTail: outcome === 'succeeded' ? '' : j.stderrTail,
        command: j.command,
        owner: j.owner,
        role: ROLES[j.role] ?? 'command',
        state: j.state,
        outcome,
        detail: [
          j.exitCode !== undefined ? `exit ${j.exitCode}` : '',
          j.signal ? `signal ${j.signal}` : '',
          j.stopReason ? `stopped (${j.stopReason})` : '',
          j.error,
        ]
          .filter(Boolean)
          .join(', '),
        from: start,
        to: j.ended?.getTime() ?? to,
      };
    }),
    power: t.power.map((p) => ({
      dut: p.dut,
      from: p.from?.getTime() ?? from,
      to: p.to?.getTime() ?? to,
      state: p.state,
      by: p.by,
    })),
    leases: t.leases.map((l) => ({
      id: l.leaseId,
      holder: l.holder,
      token: String(l.fencingToken),
      from: l.acquired?.getTime() ?? from,
      to: l.ended?.getTime() ?? to,
      ended: l.ended ? l.endReason || 'ended' : 'held',
    })),
    flash: t.flash.map((f) => ({
      at: f.at?.getTime() ?? from,
      job: f.jobId,
      phase: f.phase,
      mbPerS: f.mbPerS,
      bytesWritten: Number(f.bytesWritten),
      totalBytes: Number(f.totalBytes),
    })),
    serial: t.serial.map((s) => ({
      at: s.at?.getTime() ?? from,
      offset: String(s.offset),
      capture: t.captureJobs[s.capture] ?? '',
      text: s.text,
      event: s.event,
    })),
    serialTruncated: t.serialTruncated,
    notes,
  };
}

function outcomeOf(state: string, exitCode: number | undefined): Outcome {
  if (state === 'pending' || state === 'running') return 'running';
  if (state === 'stopped') return 'stopped';
  return state === 'exited' && exitCode === 0 ? 'succeeded' : 'failed';
}
