/**
 * What the supervisor holds per job: its record, its output log, and while it runs its process,
 * cgroup and timers. Also the checks that guard a running job's stdin.
 */
import type { ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { JigletError } from '../../../protocol/src/errors.js';
import type { Role } from '../auth/identity.js';
import type { JobOutput } from '../output/job-output.js';
import { OutputLog } from '../output/output-log.js';
import type { JobCgroup } from './containment.js';
import type { JobRecord } from './job-records.js';

/** The rights a job's processes get on the local endpoint, besides its owner and DUT. */
export interface LocalGrant {
  /** The owner's role when the job was started (a record stores only the owner's name). */
  role: Role;
  /** The lease the job was started under; none = the job may not act on any DUT. */
  lease?: string;
}

/** A running job whose processes may call the local endpoint. */
export interface LocalJob {
  readonly id: string;
  readonly owner: string;
  /** '' when the job names no DUT. */
  readonly dut: string;
  readonly grant: LocalGrant;
  /** Pids of the job's processes now (its cgroup; its process group without containment). */
  pids(): Promise<number[]>;
}

/** A job as the rest of the agent sees it. */
export interface JobView {
  readonly record: Readonly<JobRecord>;
  /** The job's output log (opened on demand for jobs of earlier agent runs). */
  output(): OutputLog;
  /** Bytes of output so far. */
  outputBytes(): number;
  /** Bytes of output held on disk: less than outputBytes() once a log's head was dropped. */
  storedBytes(): number;
}

/** A started job's process and what watches over it. */
export interface Runtime {
  child: ChildProcess;
  cgroup: JobCgroup | null;
  done: Promise<void>;
  timeout?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  /** When a stop stops waiting for the job to end (set by the first stop). */
  giveUpAt?: number;
  /** Its stdout and stderr on their way into the log, with the last lines of stderr. */
  output: JobOutput;
  /** A user's job's $JIGLET_RESULTS, read when it ends; uid = who must own the files. */
  results?: { dir: string; uid?: number };
}

/** A job as the supervisor holds it. */
export interface Entry extends JobView {
  record: JobRecord;
  log?: OutputLog;
  runtime?: Runtime;
  /** Settles once start() has finished spawning (or failing), so a racing stop can wait. */
  started: Promise<void>;
  /** What the job may do through the agent's local endpoint (see StartOptions.local). */
  local?: LocalGrant;
}

/** An entry for `record`; its log is opened from `dirOf(id)` when first asked for. */
export function makeEntry(record: JobRecord, dirOf: (id: string) => string): Entry {
  const entry: Entry = {
    record,
    started: Promise.resolve(),
    output() {
      entry.log ??= OutputLog.openExisting(dirOf(record.id));
      return entry.log;
    },
    outputBytes() {
      return entry.log && !entry.log.closed ? entry.log.length : (record.outputBytes ?? 0);
    },
    storedBytes() {
      return entry.log && !entry.log.closed ? entry.log.storedBytes : (record.outputBytes ?? 0);
    },
  };
  return entry;
}

/** The stdin of a running job started with `stdin: true`; FAILED_PRECONDITION says why not. */
export function stdinOf(entry: Entry): Writable {
  const { record } = entry;
  const stdin = entry.runtime?.child.stdin;
  if (record.state !== 'running') {
    throw new JigletError('JIGLET_E_FAILED_PRECONDITION', `job ${record.id} is ${record.state}, not running`);
  }
  if (!record.spec.stdin || !stdin) {
    throw new JigletError('JIGLET_E_FAILED_PRECONDITION', `job ${record.id} was started without stdin`);
  }
  if (stdin.writableEnded || stdin.destroyed) {
    throw new JigletError('JIGLET_E_FAILED_PRECONDITION', `the stdin of job ${record.id} is already closed`);
  }
  return stdin;
}
