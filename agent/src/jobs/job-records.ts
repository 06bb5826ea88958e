/**
 * Durable job records: one JSON file per job in the state directory, replaced atomically so a
 * crash never leaves a half-written record. A job's final record is fsynced, so its outcome
 * survives a power cut, and off the event loop (saveFinal), so a busy disk does not stall every
 * other request meanwhile; the pending and running ones are not fsynced (three fsyncs per job
 * would cost every power action): after a power cut such a job is `lost`, or, when even its
 * first record did not reach the disk, moved aside as damaged.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import type { TestCase } from '../../../protocol/src/test-cases.js';
import { writeJsonAtomic, writeJsonAtomicDurably } from '../state/atomic-json.js';
import { DAMAGED_MARK, moveAside, shapeProblem } from '../state/damaged-file.js';
import type { CgroupPaths } from './containment.js';
import { JobRecordSchema } from './job-record-shape.js';
import type { JobSpecInput } from './job-spec.js';
import { isFinal, type JobStateName } from './job-state.js';

/** Why a stopped job stopped. */
export type StopReason = 'request' | 'timeout' | 'shutdown' | 'lease' | 'error';

/** Everything the agent remembers about a job. Times are epoch milliseconds. */
export interface JobRecord {
  id: string;
  owner: string;
  spec: JobSpecInput;
  state: JobStateName;
  stopReason?: StopReason;
  exitCode?: number;
  signal?: string;
  oomKilled: boolean;
  error?: string;
  pid?: number;
  containment: string;
  cgroup?: CgroupPaths;
  /** The uid and gid a user's job ran as; absent for the agent's own (privileged) jobs. */
  runAs?: { uid: number; gid: number };
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
  /** Size of the output log once the job is over. */
  outputBytes?: number;
  /** Bytes the job's folder takes on disk, measured once after it ended (for retention). */
  diskBytes?: number;
  /** What the job is for ("power on", "flash os.img"), for the agent's own jobs. */
  title?: string;
  /** Test cases a user's job wrote to $JIGLET_RESULTS (bounded, see job-results.ts). */
  testCases?: TestCase[];
  /** What could not be read from $JIGLET_RESULTS. */
  resultsError?: string;
  /** The last lines of stderr of a job that did not succeed. */
  stderrTail?: string;
}

const RECORD_FILE = 'job.json';

/** The jobs folder of a state directory. */
export class JobRecords {
  /** Folder holding one sub-folder per job. */
  readonly root: string;

  constructor(stateDir: string) {
    this.root = join(stateDir, 'jobs');
    // Records hold env values (secrets) and logs: the agent's alone, whatever the umask.
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    chmodSync(this.root, 0o700);
  }

  /** The folder of one job (its record, output log and work dir). */
  dirOf(id: string): string {
    return join(this.root, id);
  }

  /** Creates the job's folder; fails if it exists. */
  createDir(id: string): string {
    const dir = this.dirOf(id);
    mkdirSync(dir);
    return dir;
  }

  /** Final saves under way, by job: the next save of that job, or its removal, waits for them. */
  readonly #saving = new Map<string, Promise<void>>();

  /**
   * Writes the record atomically, synchronously (durably once final: only the recovery at
   * start-up saves a final record this way). A job with a final save under way is not saved
   * here: that save would land after this one.
   */
  save(record: JobRecord): void {
    if (this.#saving.has(record.id))
      throw new Error(`job ${record.id} has a final save under way: use saveFinal`);
    writeJsonAtomic(join(this.dirOf(record.id), RECORD_FILE), record, { durable: isFinal(record.state) });
  }

  /**
   * Writes a final record atomically and durably, off the event loop. The record is taken as it
   * is now; saves of one job land in the order they were asked for.
   */
  saveFinal(record: JobRecord): Promise<void> {
    const { id } = record;
    const text = JSON.stringify(record);
    const before = this.#saving.get(id);
    const saved = (async () => {
      await before?.catch(() => undefined);
      await writeJsonAtomicDurably(join(this.dirOf(id), RECORD_FILE), text);
    })();
    // The map's copy is awaited only through catch(): a failure is the caller's to report.
    const tracked: Promise<void> = saved.then(
      () => this.#forget(id, tracked),
      () => this.#forget(id, tracked),
    );
    this.#saving.set(id, tracked);
    return saved;
  }

  #forget(id: string, save: Promise<void>): void {
    if (this.#saving.get(id) === save) this.#saving.delete(id);
  }

  /** Resolves once every final save asked for so far has landed or failed. */
  async flush(): Promise<void> {
    await Promise.all([...this.#saving.values()]);
  }

  /**
   * Loads every readable record; unreadable ones are reported to `onBad` and skipped. A record
   * that is missing, not JSON or not a job record loses that one job, never the agent: its folder
   * (output included, for a person to look at) is moved aside as `<id>.corrupt-TIME`.
   */
  loadAll(onBad: (dir: string, err: unknown) => void): JobRecord[] {
    const records: JobRecord[] = [];
    for (const entry of readdirSync(this.root, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.includes(DAMAGED_MARK)) continue;
      const dir = join(this.root, entry.name);
      let text: string | undefined;
      try {
        text = readFileSync(join(dir, RECORD_FILE), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          onBad(dir, err); // permissions, I/O: the host's to fix; the folder stays as it is
          continue;
        }
        // Created, then the agent died before the first save: the job never started.
      }
      const read =
        text === undefined ? { ok: false as const, problem: 'missing' } : shapeProblem(text, JobRecordSchema);
      if (read.ok && read.value.id === entry.name) {
        records.push(read.value as JobRecord);
        continue;
      }
      const problem = read.ok ? `it is the record of job ${read.value.id}` : read.problem;
      const movedTo = moveAside(dir);
      onBad(
        dir,
        new JigletError(
          'JIGLET_E_INTERNAL',
          `job record ${join(dir, RECORD_FILE)} is damaged (${problem}); moved the job aside to ${movedTo}: that job is gone, the others are kept`,
        ),
      );
    }
    return records;
  }

  /** Reads one record (a finished job's, on demand); throws what the file system or JSON.parse threw. */
  load(id: string): JobRecord {
    return JSON.parse(readFileSync(join(this.dirOf(id), RECORD_FILE), 'utf8')) as JobRecord;
  }

  /** Deletes a job's folder (record, log, work dir) off the event loop. */
  async remove(id: string): Promise<void> {
    await this.#saving.get(id);
    await rm(this.dirOf(id), { recursive: true, force: true, maxRetries: 2 });
  }
}
