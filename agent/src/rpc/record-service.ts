/**
 * jiglet.v1.RecordService over the run record: the timeline of a lease or a job, for reports.
 * Reading a record is a viewer's right, like reading jobs and tailing serial.
 */
import type { Logger } from 'pino';
import {
  type GetTimelineResponse,
  JobRole,
  type RecordServiceServer,
  TimelineEventKind,
} from '../../../protocol/gen/jiglet/v1/records.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { Identity } from '../auth/identity.js';
import { seesLeaseId } from '../auth/permissions.js';
import type { JobRoleName, Timeline, TimelineKind } from '../timeline/timeline.js';
import type { TimelineReader } from '../timeline/timeline-reader.js';
import { unary } from './respond.js';

/** Longest id a request may carry (lease and job ids are UUIDs). */
const MAX_ID = 128;

const KIND: Record<TimelineKind, TimelineEventKind> = {
  power: TimelineEventKind.TIMELINE_EVENT_KIND_POWER,
  flash: TimelineEventKind.TIMELINE_EVENT_KIND_FLASH,
  job: TimelineEventKind.TIMELINE_EVENT_KIND_JOB,
  expect: TimelineEventKind.TIMELINE_EVENT_KIND_EXPECT,
  lease: TimelineEventKind.TIMELINE_EVENT_KIND_LEASE,
  health: TimelineEventKind.TIMELINE_EVENT_KIND_HEALTH,
  serial: TimelineEventKind.TIMELINE_EVENT_KIND_SERIAL,
  exec: TimelineEventKind.TIMELINE_EVENT_KIND_EXEC,
  ssh: TimelineEventKind.TIMELINE_EVENT_KIND_SSH,
  state: TimelineEventKind.TIMELINE_EVENT_KIND_STATE,
};

const ROLE: Record<JobRoleName, JobRole> = {
  command: JobRole.JOB_ROLE_COMMAND,
  power: JobRole.JOB_ROLE_POWER,
  flash: JobRole.JOB_ROLE_FLASH,
};

const date = (ms: number | undefined): Date | undefined => (ms === undefined ? undefined : new Date(ms));

/**
 * The wire form of a timeline as `who` may see it: lease ids only of leases it held, unless it is
 * an admin (issue 11). The lease asked for is echoed: the caller sent its id.
 */
export function toWireTimeline(t: Timeline, who: Identity): GetTimelineResponse {
  const idOf = (lease: string | undefined, holder: string | undefined): string =>
    lease !== undefined && seesLeaseId(who, holder ?? '') ? lease : '';
  return {
    leaseId: t.leaseId,
    jobId: t.jobId,
    dut: t.dut,
    from: new Date(t.from),
    to: new Date(t.to),
    ongoing: t.ongoing,
    events: t.events.map((e) => ({
      at: new Date(e.at),
      kind: KIND[e.kind],
      dut: e.dut,
      fields:
        e.kind === 'lease' ? withoutHiddenId(e.fields, idOf(e.fields.lease, e.fields.holder)) : e.fields,
      summary: e.summary,
    })),
    jobs: t.jobs.map((j) => ({
      jobId: j.job,
      owner: j.owner,
      command: j.command,
      dut: j.dut,
      role: ROLE[j.role],
      state: j.state,
      exitCode: j.exitCode,
      signal: j.signal ?? '',
      stopReason: j.stopReason ?? '',
      error: j.error ?? '',
      name: j.name,
      stderrTail: j.stderrTail ?? '',
      created: new Date(j.createdAt),
      started: date(j.startedAt),
      ended: date(j.endedAt),
    })),
    power: t.power.map((p) => ({
      dut: p.dut,
      from: new Date(p.from),
      to: new Date(p.to),
      state: p.state,
      jobId: p.job,
      by: p.by,
    })),
    leases: t.leases.map((l) => ({
      leaseId: idOf(l.lease, l.holder),
      dut: l.dut,
      holder: l.holder,
      fencingToken: BigInt(l.token),
      acquired: new Date(l.acquiredAt),
      ended: date(l.endedAt),
      endReason: l.reason ?? '',
    })),
    flash: t.flash.map((f) => ({
      at: new Date(f.at),
      jobId: f.job,
      phase: f.phase,
      bytesWritten: BigInt(Math.trunc(f.bytesWritten)),
      bytesRead: BigInt(Math.trunc(f.bytesRead)),
      totalBytes: BigInt(Math.trunc(f.totalBytes ?? 0)),
      mbPerS: f.mbPerS,
      phaseMbPerS: f.phaseMbPerS,
    })),
    serial: t.serial.map((s) => ({
      at: new Date(s.at),
      offset: BigInt(s.offset),
      capture: s.capture,
      text: s.text,
      event: s.event,
    })),
    captureJobs: t.captureJobs,
    serialTruncated: t.serialTruncated,
    eventsTruncated: t.eventsTruncated,
    notes: t.notes,
  };
}

/** A lease event's fields, without the lease id when it is hidden from the caller. */
function withoutHiddenId(fields: Record<string, string>, shown: string): Record<string, string> {
  if (shown !== '') return fields;
  const { lease: _hidden, ...rest } = fields;
  return rest;
}

/** Builds the RecordService handlers. */
export function recordService(reader: TimelineReader, log: Logger): RecordServiceServer {
  return {
    getTimeline: unary(log, 'GetTimeline', async (call) => {
      const { leaseId, jobId, includeSerial } = call.request;
      const who = identityOf(call);
      if (leaseId) {
        if (leaseId.length > MAX_ID) throw invalidArgument(`"${leaseId.slice(0, 16)}…" is not a lease id`);
        return toWireTimeline(await reader.forLease(leaseId, includeSerial), who);
      }
      if (jobId) {
        if (jobId.length > MAX_ID) throw invalidArgument(`"${jobId.slice(0, 16)}…" is not a job id`);
        return toWireTimeline(await reader.forJob(jobId, includeSerial), who);
      }
      throw invalidArgument('name the lease or the job to report on (lease_id or job_id)');
    }),
  };
}
