/**
 * What a fleet-queue job is: its states, what CI submits, what the store gives back, and the
 * checks a submission must pass (with messages a person can act on).
 */
import { invalidArgument } from '../../../protocol/src/errors.js';

/** Where a job is in its life. */
export type JobState = 'queued' | 'claimed' | 'running' | 'succeeded' | 'failed' | 'cancelled';
/** Every job state. */
export const JOB_STATES: readonly JobState[] = [
  'queued',
  'claimed',
  'running',
  'succeeded',
  'failed',
  'cancelled',
];
/** How a job ends. */
export type FinalState = 'succeeded' | 'failed' | 'cancelled';

/**
 * What an attempt (and a job) came to. `fail` is the test's own word (its command exited
 * non-zero); `infra-error` means the DUT never reached the test (lease, flash, power, boot, the
 * agent or the worker failed) and is retried on another DUT; `fail` never is.
 */
export type Verdict = 'pass' | 'fail' | 'infra-error' | 'timeout' | 'cancelled';
/** Every verdict. */
export const VERDICTS: readonly Verdict[] = ['pass', 'fail', 'infra-error', 'timeout', 'cancelled'];
/** The step of a run a verdict blames. */
export type RunStep = 'lease' | 'flash' | 'power' | 'boot' | 'command' | 'agent' | 'worker';
/** Every step. */
export const RUN_STEPS: readonly RunStep[] = [
  'lease',
  'flash',
  'power',
  'boot',
  'command',
  'agent',
  'worker',
];
/** How an attempt ended, as a worker reports it. */
export interface AttemptEnd {
  verdict: Verdict;
  /** Why, in words a person can act on (absent for a pass). */
  reason?: string;
  step?: RunStep;
  exitCode?: number;
  agentJobId?: string;
}
/** This many infra-errors in a row on one DUT send it to its health check (or make it bad), as LAVA does. */
export const INFRA_ERRORS_BEFORE_HEALTH_CHECK = 3;
/** A DUT its worker has not reported for this long counts as offline. */
export const STALE_DUT_MS = 60_000;
/** Environment variables a submitter may give a job. */
export const MAX_ENV_VARS = 64;
export const MAX_ENV_BYTES = 64 * 1024;
/** The queue worker sets these itself; a submitter may not. */
export const RESERVED_ENV_PREFIX = 'JIGLET_';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const MIN_TIMEOUT_MS = 1000;
export const MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000;
export const MAX_ATTEMPTS_LIMIT = 20;
export const DEFAULT_MAX_ATTEMPTS = 3;
export const PRIORITY_LIMIT = 1000;
export const MAX_LABELS = 32;
export const MAX_ARGS = 1024;
export const MAX_COMMAND_BYTES = 128 * 1024;
export const MAX_TEXT = 256;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_LOG_LIMIT = 1000;
/** Largest run report stored (the agent bounds a timeline's serial log to 5 MiB). */
export const MAX_REPORT_BYTES = 32 * 1024 * 1024;
export const MAX_LOG_LIMIT = 10_000;
/** NOTIFY channels; the payload is the job id. */
export const LOG_CHANNEL = 'jiglet_queue_log';
export const SUBMIT_CHANNEL = 'jiglet_queue_submit';
/** Same rule as DUT labels in a jig description. */
const LABEL_KEY = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

/** What CI submits. */
export interface JobSpec {
  /** Every label must be on the DUT that runs the job. */
  labels: Record<string, string>;
  command: string[];
  image?: { path: string; sha256: string };
  timeoutMs: number;
  /** Higher first; default 0. */
  priority?: number;
  /** How many attempts it gets (infra-errors and lost workers are retried); default 3. */
  maxAttempts?: number;
  submittedBy?: string;
  /** Added to the command's environment; shown only to the submitter. */
  env?: Record<string, string>;
}

/** A job as stored. `attempts` counts claims, including the current one. */
export interface QueueJob {
  id: string;
  state: JobState;
  labels: Record<string, string>;
  command: string[];
  image?: { path: string; sha256: string };
  timeoutMs: number;
  priority: number;
  maxAttempts: number;
  attempts: number;
  submittedBy?: string;
  submittedAt: Date;
  worker?: string;
  agent?: string;
  dut?: string;
  leaseId?: string;
  agentJobId?: string;
  claimedAt?: Date;
  startedAt?: Date;
  heartbeatAt?: Date;
  finishedAt?: Date;
  cancelRequested: boolean;
  exitCode?: number;
  error?: string;
  env: Record<string, string>;
  /** Set once the job is over. */
  verdict?: Verdict;
  verdictReason?: string;
  failedStep?: RunStep;
  /** DUTs where an attempt ended in an infra-error: a retry prefers others. */
  avoid: { agent: string; dut: string }[];
}

/** One claim of a job and how it ended (no outcome while it runs). */
export interface QueueAttempt {
  attempt: number;
  worker: string;
  agent: string;
  dut: string;
  startedAt: Date;
  endedAt?: Date;
  outcome?: FinalState | 'lost';
  reason?: string;
  verdict?: Verdict;
  step?: RunStep;
  exitCode?: number;
  agentJobId?: string;
}

/** A registered DUT that could run a job, and what it does now. */
export interface DutActivity {
  agent: string;
  name: string;
  /** idle, leased, running (a queue job), bad, maintenance or offline (not reported lately). */
  activity: 'idle' | 'leased' | 'running' | 'bad' | 'maintenance' | 'offline';
  /** The queue job it runs, when `running`. */
  job?: string;
}

/** Where a queued job stands: its place in line, the DUTs that could run it, and when it may start. */
export interface QueuePlace {
  /** 1 = next among queued jobs that want the same labels. */
  position: number;
  /** Queued jobs that want the same labels, this one included. */
  queuedWithSameLabels: number;
  duts: DutActivity[];
  /** From recent run times of jobs with the same labels; absent when there is none to go by. */
  estimate?: { startInMs: number; typicalRunMs: number; fromRuns: number };
  /** Why there is no estimate. */
  noEstimate?: string;
}

/** One chunk of a job's output. */
export interface LogChunk {
  seq: string;
  attempt: number;
  data: Buffer;
}

/** A DUT as its agent's worker sees it. */
export interface DutReport {
  name: string;
  labels: Record<string, string>;
  health: 'good' | 'bad' | 'maintenance';
  leased: boolean;
}

/** DUT counts for one label set; a DUT not seen lately counts only as offline. */
export interface DutCounts {
  idle: number;
  busy: number;
  quarantined: number;
  offline: number;
}

/** Queue depth per distinct label set of unfinished jobs, with the DUTs that could serve it. */
export interface QueueStats {
  labelSets: { labels: Record<string, string>; queued: number; running: number; duts: DutCounts }[];
  totals: Record<JobState, number>;
}

/** Who claims: a worker, for a DUT it may lease on an agent. */
export interface Claimant {
  worker: string;
  agent: string;
  dut: string;
  dutLabels: Record<string, string>;
}

export function checkId(id: string): string {
  if (typeof id !== 'string' || !/^[1-9]\d{0,18}$/.test(id))
    throw invalidArgument(`"${id}" is not a queue job id`);
  return id;
}

export function checkLimit(limit: number | undefined, fallback: number, most: number): number {
  if (limit === undefined) return fallback;
  if (!Number.isInteger(limit) || limit < 1 || limit > most) {
    throw invalidArgument(`limit must be a whole number from 1 to ${most}, not ${limit}`);
  }
  return limit;
}

export function checkName(what: string, value: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TEXT || CONTROL.test(value)) {
    throw invalidArgument(
      `${what} must be 1 to ${MAX_TEXT} printable characters, not ${JSON.stringify(value)}`,
    );
  }
}

export function checkLabels(what: string, labels: Record<string, string>, mayBeEmpty: boolean): void {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
    throw invalidArgument(`${what} must be an object of name: value`);
  }
  const entries = Object.entries(labels);
  if (entries.length === 0 && !mayBeEmpty) {
    throw invalidArgument(`${what} must name at least one label, or the job could run on any DUT`);
  }
  if (entries.length > MAX_LABELS) throw invalidArgument(`${what}: at most ${MAX_LABELS} labels`);
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) {
      throw invalidArgument(`${what}: label name "${key}" must be a-z, 0-9, ".", "_", "/", "-" (at most 63)`);
    }
    checkName(`${what}: value of "${key}"`, value);
  }
}

export function validateSpec(spec: JobSpec): void {
  checkLabels('labels', spec.labels, false);
  const { command } = spec;
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    typeof command[0] !== 'string' ||
    command[0] === ''
  ) {
    throw invalidArgument('command must be a non-empty argv, e.g. ["make", "test"]');
  }
  if (command.length > MAX_ARGS) throw invalidArgument(`command: at most ${MAX_ARGS} arguments`);
  if (command.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) {
    throw invalidArgument('command arguments must be strings without NUL characters');
  }
  if (command.reduce((n, arg) => n + Buffer.byteLength(arg), 0) > MAX_COMMAND_BYTES) {
    throw invalidArgument(`command is longer than ${MAX_COMMAND_BYTES / 1024} KiB`);
  }
  if (spec.image !== undefined) validateImage(spec.image);
  checkRange('timeoutMs', spec.timeoutMs, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, 'between 1 s and 7 days');
  if (spec.priority !== undefined) checkRange('priority', spec.priority, -PRIORITY_LIMIT, PRIORITY_LIMIT);
  if (spec.maxAttempts !== undefined) checkRange('maxAttempts', spec.maxAttempts, 1, MAX_ATTEMPTS_LIMIT);
  if (spec.submittedBy !== undefined) checkName('submittedBy', spec.submittedBy);
  if (spec.env !== undefined) checkEnv(spec.env);
}

/** A submitter's job environment: names a shell accepts, none of the worker's own, bounded. */
export function checkEnv(env: Record<string, string>): void {
  if (typeof env !== 'object' || env === null || Array.isArray(env)) {
    throw invalidArgument('env must be an object of NAME: value');
  }
  const entries = Object.entries(env);
  if (entries.length > MAX_ENV_VARS) throw invalidArgument(`env: at most ${MAX_ENV_VARS} variables`);
  let bytes = 0;
  for (const [name, value] of entries) {
    if (!ENV_NAME.test(name)) {
      throw invalidArgument(
        `env: "${name}" is not a variable name (letters, digits and _, not first a digit)`,
      );
    }
    if (name.startsWith(RESERVED_ENV_PREFIX)) {
      throw invalidArgument(
        `env: ${name} is set by the queue worker itself (every ${RESERVED_ENV_PREFIX}* name is); choose another name`,
      );
    }
    if (typeof value !== 'string' || value.includes('\0')) {
      throw invalidArgument(`env: the value of ${name} must be a string without NUL characters`);
    }
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  if (bytes > MAX_ENV_BYTES) throw invalidArgument(`env is longer than ${MAX_ENV_BYTES / 1024} KiB`);
}

export function validateImage(image: { path: string; sha256: string }): void {
  if (
    typeof image.path !== 'string' ||
    image.path === '' ||
    image.path.length > 4096 ||
    image.path.includes('\0')
  ) {
    throw invalidArgument('image path must be a non-empty path');
  }
  if (typeof image.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(image.sha256)) {
    throw invalidArgument(`image sha256 must be 64 lowercase hex digits, not "${image.sha256}"`);
  }
}

export function checkRange(what: string, value: number, least: number, most: number, words?: string): void {
  if (!Number.isInteger(value) || value < least || value > most) {
    throw invalidArgument(
      `${what} must be a whole number ${words ?? `from ${least} to ${most}`}, not ${value}`,
    );
  }
}
