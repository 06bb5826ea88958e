/**
 * The jobs the supervisor knows, by how much of each it keeps in memory: live jobs whole, the
 * last few finished ones whole, and a compact index of every other one kept on disk (issue 11).
 * A finished job's full record is read from its folder when asked for.
 */
import type { Logger } from 'pino';
import { notFound } from '../../../protocol/src/errors.js';
import { type Entry, type JobView, type LocalJob, makeEntry } from './job-entry.js';
import { type JobCursor, type JobFilter, JobIndex, type JobIndexEntry } from './job-index.js';
import type { JobRecord, JobRecords } from './job-records.js';
import { isFinal } from './job-state.js';
import { treePids } from './process-tree.js';

/**
 * What a job's folder takes besides its output log until it is measured: the folder, the record,
 * the log (its partial last block), the log's index, an empty work dir and its empty results
 * folder, one 4 KiB block each on ext4. Over rather than under: the size bound must hold before
 * the measurement comes in.
 */
export const JOB_DIR_OVERHEAD_BYTES = 24 * 1024;
/** Finished jobs kept whole in memory after they ended: a client asks about a job right after it ends. */
const RECENT_KEPT = 256;

/** Live, recent and indexed jobs; the one place that decides what stays in memory. */
export class JobTable {
  /** Jobs that are not over yet. */
  readonly #live = new Map<string, Entry>();
  /** Jobs that ended lately, newest last (bounded by RECENT_KEPT). */
  readonly #recent = new Map<string, Entry>();
  readonly index = new JobIndex();

  constructor(
    readonly records: JobRecords,
    readonly log: Logger,
  ) {}

  /** A new entry for `record`, not yet in the table. */
  entry(record: JobRecord): Entry {
    return makeEntry(record, (id) => this.records.dirOf(id));
  }

  /** Adds a job that has just been created (pending). */
  addLive(entry: Entry): void {
    this.#live.set(entry.record.id, entry);
    this.index.add(indexEntryOf(entry.record));
  }

  /** Adds a job of an earlier run, which is over: only its index entry stays in memory. */
  addRecovered(record: JobRecord): void {
    this.index.add(indexEntryOf(record));
  }

  /** The jobs that are not over yet, in the order they were started. */
  live(): IterableIterator<Entry> {
    return this.#live.values();
  }

  /**
   * The running jobs that hold a local-endpoint grant. A job that has ended is never listed, so
   * a connection is only ever matched to a job whose processes are still supervised.
   * `contained`: the agent puts jobs in cgroups, so a job's processes are its cgroup's.
   */
  localJobs(contained: boolean): LocalJob[] {
    const out: LocalJob[] = [];
    for (const entry of this.#live.values()) {
      const { record, runtime, local } = entry;
      if (!local || !runtime || record.state !== 'running') continue;
      out.push({
        id: record.id,
        owner: record.owner,
        dut: record.spec.dut,
        grant: local,
        pids: () => treePids(runtime, contained),
      });
    }
    return out;
  }

  /** A job that is not over yet. */
  liveOne(id: string): Entry | undefined {
    return this.#live.get(id);
  }

  /** A job is over: it leaves the live set for the recent ones, and its index entry is final. */
  retire(entry: Entry): void {
    const { record } = entry;
    this.#live.delete(record.id);
    const indexed = this.index.get(record.id);
    if (indexed) {
      // In place: re-adding would cost a pass over the whole index per job.
      indexed.state = record.state;
      indexed.endedAt = record.endedAt;
      this.index.setBytes(record.id, indexEntryOf(record).bytes, false);
    } else this.index.add(indexEntryOf(record));
    this.#recent.set(record.id, entry);
    if (this.#recent.size > RECENT_KEPT) {
      const oldest = this.#recent.keys().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
  }

  /** A live or recent job from memory, else a finished one from disk; NOT_FOUND says why not. */
  find(id: string): Entry {
    const inMemory = this.#live.get(id) ?? this.#recent.get(id);
    if (inMemory) return inMemory;
    const shown = id.slice(0, 80);
    if (!this.index.get(id)) {
      throw notFound(
        this.index.wasPruned(id)
          ? `job ${shown} was pruned by the retention policy: its record and output are deleted`
          : `no job with id "${shown}": it never existed, or it ended long ago and was pruned by the retention policy`,
      );
    }
    try {
      return this.entry(this.records.load(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw notFound(`job ${shown} was pruned by the retention policy: its record and output are deleted`);
      }
      this.log.warn({ job: id, err }, 'job record unreadable');
      throw notFound(`the record of job ${shown} cannot be read: ${(err as Error).message}`);
    }
  }

  /**
   * A page of jobs matching `filter`, newest first, after `cursor`; full records, read as needed.
   * `last` is where the page ended in the index (a job pruned meanwhile is skipped, not waited for).
   */
  page(
    filter: JobFilter,
    limit: number,
    cursor?: JobCursor,
  ): { jobs: JobView[]; more: boolean; last?: JobCursor } {
    const { jobs, more } = this.index.page(filter, limit, cursor);
    const end = jobs.at(-1);
    const last = end && { createdAt: end.createdAt, id: end.id };
    const views: JobView[] = [];
    for (const e of jobs) {
      try {
        views.push(this.find(e.id));
      } catch (err) {
        // Pruned or unreadable since the index was read: a listing skips it rather than failing.
        this.log.debug({ job: e.id, err }, 'job vanished while listing');
      }
    }
    return { jobs: views, more, last };
  }

  /** Full records of the jobs whose index entry passes `match`, oldest first. */
  matching(match: (e: Readonly<JobIndexEntry>) => boolean): JobRecord[] {
    const out: JobRecord[] = [];
    for (const e of this.index.entries()) {
      if (!match(e)) continue;
      try {
        out.push(this.find(e.id).record);
      } catch (err) {
        this.log.debug({ job: e.id, err }, 'job vanished while reading records');
      }
    }
    return out;
  }

  /**
   * Takes finished jobs out of the index (their ids are remembered as pruned) and returns those
   * taken; the caller deletes their folders. A job that is not over is never taken.
   */
  forget(ids: readonly string[]): JobIndexEntry[] {
    const taken: JobIndexEntry[] = [];
    for (const id of ids) {
      const e = this.index.get(id);
      if (!e || this.#live.has(id) || !isFinal(e.state)) continue;
      taken.push({ ...e });
      this.#recent.delete(id);
    }
    this.index.removeMany(
      taken.map((e) => e.id),
      true,
    );
    return taken;
  }

  /** Refreshes the sizes of live jobs in the index (their logs grow). */
  refreshLiveBytes(): void {
    for (const entry of this.#live.values()) {
      this.index.setBytes(entry.record.id, entry.storedBytes() + JOB_DIR_OVERHEAD_BYTES, false);
    }
  }

  /** Records a finished job's measured folder size, in the index and in its record. */
  setDiskBytes(id: string, bytes: number): void {
    const e = this.index.get(id);
    if (!e || !isFinal(e.state) || this.#live.has(id)) return;
    this.index.setBytes(id, bytes, true);
    const record = this.#recent.get(id)?.record ?? this.records.load(id);
    record.diskBytes = bytes;
    this.records.saveFinal(record).catch((err: unknown) => {
      // Only the measurement is lost: the next start measures the folder again.
      this.log.warn({ job: id, err }, 'could not save the measured size of a job');
    });
  }
}

/** The index entry of a job; its size is an estimate until retention measures its folder. */
function indexEntryOf(record: JobRecord): JobIndexEntry {
  const measured = record.diskBytes !== undefined;
  return {
    id: record.id,
    owner: record.owner,
    state: record.state,
    dut: record.spec.dut ?? '',
    createdAt: record.createdAt,
    endedAt: record.endedAt,
    bytes: record.diskBytes ?? (record.outputBytes ?? 0) + JOB_DIR_OVERHEAD_BYTES,
    measured,
  };
}
