/**
 * What a job may do through the local endpoint, as data: each RPC → what its request names (a
 * DUT, a lease, a job) and whether it acts or only reads. The auth interceptor applies it to every
 * call from a job, on top of the owner's role; an RPC missing here is refused, like in
 * permissions.ts. The job acts on its own DUT under its own lease, nothing else.
 */
import { failedPrecondition, permissionDenied } from '../../../protocol/src/errors.js';

/** What one request message names, as the scope check needs it. */
export interface Target {
  /** The DUT the call is about ('' or absent: none). */
  dut?: string;
  /** True when the call changes something on the DUT (power, console, flash, a job on it). */
  acts: boolean;
  /** A lease id the request body names (Renew). */
  lease?: string;
  /** A job id the request body names (StopJob, WriteStdin). */
  job?: string;
}

/** A method's rule: read what the request names, or refuse it outright with the reason. */
export type ScopeRule = { target: (msg: Readonly<Record<string, unknown>>) => Target } | { refuse: string };

/** A rule that lets the call through to have its request checked. */
export type TargetRule = Extract<ScopeRule, { target: unknown }>;

/** The job a local call comes from, as the scope check sees it. */
export interface ScopedJob {
  id: string;
  /** '' when the job names no DUT. */
  dut: string;
  lease?: string;
}

const read = (dut?: (m: Readonly<Record<string, unknown>>) => unknown): ScopeRule => ({
  target: (m) => ({ dut: dut ? text(dut(m)) : undefined, acts: false }),
});
const acts = (dut: (m: Readonly<Record<string, unknown>>) => unknown): ScopeRule => ({
  target: (m) => ({ dut: text(dut(m)), acts: true }),
});

/** Full gRPC method path → the rule for calls from a job. */
export const LOCAL_RULES: Readonly<Record<string, ScopeRule>> = {
  // A job may start helpers on its own DUT: they run under the same lease and end with it, and the
  // owner could start them with its certificate anyway. A job without a DUT starts nothing.
  '/jiglet.v1.JobService/StartJob': {
    target: (m) => ({ dut: text(record(m.spec).dut), acts: true }),
  },
  '/jiglet.v1.JobService/StopJob': { target: (m) => ({ job: text(m.id), acts: true }) },
  '/jiglet.v1.JobService/WriteStdin': { target: (m) => ({ job: text(m.id), acts: true }) },
  '/jiglet.v1.JobService/GetJob': read(),
  '/jiglet.v1.JobService/ListJobs': read(),
  '/jiglet.v1.JobService/StreamOutput': read(),
  '/jiglet.v1.JigService/ListDuts': read(),
  '/jiglet.v1.JigService/Power': {
    // POWER_ACTION_STATUS (4) switches nothing.
    target: (m) => ({ dut: text(m.dut), acts: m.action !== 4 }),
  },
  '/jiglet.v1.JigService/SerialTail': read((m) => m.dut),
  '/jiglet.v1.JigService/Expect': read((m) => m.dut),
  // Only the first message (open) names the DUT; keystrokes that follow name nothing.
  '/jiglet.v1.JigService/Console': {
    target: (m) => (m.open === undefined ? { acts: false } : { dut: text(record(m.open).dut), acts: true }),
  },
  '/jiglet.v1.JigService/Flash': acts((m) => m.dut),
  '/jiglet.v1.JigService/Exec': acts((m) => m.dut),
  // Only the first message (open) names the DUT, as for the console.
  '/jiglet.v1.DutAccessService/Ssh': {
    target: (m) => (m.open === undefined ? { acts: false } : { dut: text(record(m.open).dut), acts: true }),
  },
  '/jiglet.v1.DutAccessService/CopyToDut': {
    target: (m) => (m.open === undefined ? { acts: false } : { dut: text(record(m.open).dut), acts: true }),
  },
  '/jiglet.v1.DutAccessService/CopyFromDut': acts((m) => m.dut),
  '/jiglet.v1.DutAccessService/ForgetHostKey': acts((m) => m.dut),
  '/jiglet.v1.JigService/GotoState': acts((m) => m.dut),
  '/jiglet.v1.JigService/SetDutState': acts((m) => m.dut),
  '/jiglet.v1.JigService/CheckDutHealth': acts((m) => m.dut),
  '/jiglet.v1.LeaseService/Claim': {
    refuse:
      'a job acts under the lease it was started with; it may not claim another (claim outside the job, e.g. jigctl claim --exec)',
  },
  // Heartbeats of its own lease keep a long job's DUT; any other lease is refused below.
  '/jiglet.v1.LeaseService/Renew': { target: (m) => ({ lease: text(m.leaseId), acts: true }) },
  '/jiglet.v1.LeaseService/Release': {
    refuse:
      'a job may not release leases: its lease belongs to whoever started it (the queue worker, jigctl claim --exec), and ending it would stop the job itself',
  },
  '/jiglet.v1.LeaseService/ListLeases': read(),
  '/jiglet.v1.LeaseService/WatchLeases': read((m) => m.dut),
  '/jiglet.v1.RecordService/GetTimeline': read(),
  '/jiglet.v1.WebService/IssueTicket': {
    refuse:
      'a browser console ticket would let its bearer act outside the job; open the console with a client certificate',
  },
  '/jiglet.v1.ImageService/StatImage': read(),
  '/jiglet.v1.ImageService/ListImages': read(),
  // Images are content-addressed: an upload changes no one else's image (needed before a Flash).
  '/jiglet.v1.ImageService/UploadImage': read(),
  '/jiglet.v1.ImageService/RemoveImage': {
    refuse: 'removing cached images affects every user of the jig; do it with a client certificate',
  },
  '/grpc.health.v1.Health/Check': read(),
  '/grpc.health.v1.Health/Watch': read(),
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': read(),
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': read(),
};

/** Refuses a method no job may call, before its request is read. */
export function checkLocalMethod(job: ScopedJob, methodPath: string): TargetRule {
  const rule = LOCAL_RULES[methodPath];
  if (rule === undefined)
    throw permissionDenied(`${methodPath} is not available to jobs on the local endpoint`);
  if ('refuse' in rule) throw permissionDenied(`job ${job.id}: ${rule.refuse}`);
  return rule;
}

/**
 * The lease a job's call travels under: the job's own when the call carries none; a call that
 * carries another lease is refused (a job never borrows someone else's lease, even its owner's).
 */
export function localLease(job: ScopedJob, sent: string | undefined): string | undefined {
  if (sent === undefined || sent === job.lease) return job.lease;
  throw permissionDenied(
    job.lease === undefined
      ? `job ${job.id} holds no lease and may not use lease ${sent}; a job acts only under the lease it was started with`
      : `job ${job.id} acts only under its own lease ${job.lease}; this call carried lease ${sent}`,
  );
}

/**
 * Checks one request message of a job's call against its scope. `dutOfJob` names the DUT of a job
 * the request names (StopJob, WriteStdin); it throws NOT_FOUND for a job that does not exist.
 */
export function checkLocalTarget(job: ScopedJob, target: Target, dutOfJob: (id: string) => string): void {
  const dut = target.dut ?? '';
  if (target.lease !== undefined && target.lease !== job.lease) {
    throw permissionDenied(
      `job ${job.id} may act only on its own lease${job.lease ? ` ${job.lease}` : ' (it holds none)'}, not on lease ${target.lease}`,
    );
  }
  if (target.job !== undefined && target.job !== '' && target.job !== job.id) {
    const other = dutOfJob(target.job);
    if (job.dut === '' || other !== job.dut)
      throw permissionDenied(
        `job ${job.id} may act only on jobs on its own DUT${job.dut ? ` ${job.dut}` : ' (it has none)'}; job ${target.job} is ${other ? `on ${other}` : 'on no DUT'}`,
      );
  }
  if (dut !== '' && job.dut !== '' && dut !== job.dut)
    throw permissionDenied(`job ${job.id} may act only on its own DUT ${job.dut}; this call names ${dut}`);
  if (target.acts) {
    if (job.lease === undefined)
      throw failedPrecondition(
        `job ${job.id} holds no lease, so it may not act on ${dut || 'a DUT'}: start the job under a lease ` +
          '(jigctl run --dut DUT --lease ID, a queued job, or jigctl claim --exec) or use a client certificate',
      );
    if (job.dut === '' && target.job === undefined)
      throw permissionDenied(`job ${job.id} names no DUT, so it may not act on ${dut || 'one'}`);
  }
  if (target.acts && dut === '' && target.job === undefined && target.lease === undefined)
    throw permissionDenied(
      `job ${job.id} may act only on its own DUT ${job.dut}; this call names none (e.g. jigctl run --dut ${job.dut} -- CMD)`,
    );
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function record(value: unknown): Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}
