/**
 * A timeline as the agent builds it (times in epoch ms): what RecordService.GetTimeline sends,
 * before it becomes protobuf in the RPC layer.
 */

/** What a timeline event is about. */
export type TimelineKind =
  | 'power'
  | 'flash'
  | 'job'
  | 'expect'
  | 'lease'
  | 'health'
  | 'serial'
  | 'exec'
  | 'state'
  | 'ssh';

/** One thing that happened. */
export interface TimelineEvent {
  at: number;
  kind: TimelineKind;
  dut: string;
  fields: Record<string, string>;
  summary: string;
}

/** Why a job ran on the DUT. */
export type JobRoleName = 'command' | 'power' | 'flash';

/** One job's life. */
export interface JobSpanView {
  job: string;
  owner: string;
  command: string;
  /** What it did, as people name it ("power on", "flash os.img", the user's command line). */
  name: string;
  dut: string;
  role: JobRoleName;
  state: string;
  exitCode?: number;
  signal?: string;
  stopReason?: string;
  error?: string;
  /** The last lines of stderr of a job that did not succeed. */
  stderrTail?: string;
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
}

/** A stretch of time in one power state. */
export interface PowerSpan {
  dut: string;
  from: number;
  to: number;
  state: string;
  job: string;
  by: string;
}

/** One lease of the DUT. */
export interface LeaseSpanView {
  lease: string;
  dut: string;
  holder: string;
  token: number;
  acquiredAt: number;
  endedAt?: number;
  reason?: string;
}

/** One flash progress point. */
export interface FlashPoint {
  at: number;
  job: string;
  phase: string;
  bytesWritten: number;
  bytesRead: number;
  totalBytes: number | null;
  /** Rate of bytesRead since the previous point of the same job and phase (MB/s). */
  mbPerS: number;
  /** The flasher's own average since the phase began. */
  phaseMbPerS: number;
}

/** One serial line (or capture event), with where it is in which capture log. */
export interface SerialLineView {
  at: number;
  offset: number;
  /** Index into Timeline.captureJobs. */
  capture: number;
  text: string;
  event: boolean;
}

/** Everything known about a lease or job. */
export interface Timeline {
  leaseId: string;
  jobId: string;
  dut: string;
  from: number;
  to: number;
  ongoing: boolean;
  events: TimelineEvent[];
  jobs: JobSpanView[];
  power: PowerSpan[];
  leases: LeaseSpanView[];
  flash: FlashPoint[];
  serial: SerialLineView[];
  captureJobs: string[];
  serialTruncated: boolean;
  eventsTruncated: boolean;
  notes: string[];
}
