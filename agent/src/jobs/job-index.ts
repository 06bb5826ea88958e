/**
 * The compact in-memory index of every job the agent keeps (issue 11): a few fields per job, so
 * a year of power cycles costs kilobytes per thousand jobs instead of every full record. Full
 * records of finished jobs stay on disk and are read on demand.
 *
 * Entries are kept sorted by (createdAt, id), so a page of `ListJobs` is a binary search plus a
 * short walk, and a page token (the last key sent) stays valid while jobs come and go.
 */
import type { JobStateName } from './job-state.js';

/** What the index holds of one job. */
export interface JobIndexEntry {
  readonly id: string;
  readonly owner: string;
  state: JobStateName;
  /** '' for a job without a DUT. */
  readonly dut: string;
  readonly createdAt: number;
  endedAt?: number;
  /** Bytes the job takes in the state directory (estimated until measured). */
  bytes: number;
  /** True once `bytes` is a measurement of the job's folder, not an estimate. */
  measured: boolean;
}

/** Filters of a listing; empty = any. */
export interface JobFilter {
  states?: readonly JobStateName[];
  owner?: string;
  dut?: string;
}

/** Where a page starts: the key of the last job of the page before. */
export interface JobCursor {
  createdAt: number;
  id: string;
}

/** Ended jobs whose ids are remembered as pruned, so a late reader is told why it is gone. */
const TOMBSTONES_KEPT = 10_000;

/** Sorted, filterable index of jobs with a bounded memory of pruned ids. */
export class JobIndex {
  readonly #byId = new Map<string, JobIndexEntry>();
  /** Ascending by (createdAt, id). */
  #sorted: JobIndexEntry[] = [];
  readonly #pruned = new Set<string>();
  /** Owners and DUT names repeat across thousands of jobs: one string each. */
  readonly #strings = new Map<string, string>();
  #bytes = 0;

  /** Jobs indexed. */
  get size(): number {
    return this.#byId.size;
  }

  /** Sum of `bytes` over every job. */
  get bytes(): number {
    return this.#bytes;
  }

  /** One job's entry. */
  get(id: string): JobIndexEntry | undefined {
    return this.#byId.get(id);
  }

  /** Every entry, oldest first (a copy: safe to prune while walking it). */
  entries(): JobIndexEntry[] {
    return [...this.#sorted];
  }

  /** True if the job was pruned recently enough to be remembered. */
  wasPruned(id: string): boolean {
    return this.#pruned.has(id);
  }

  /** Adds a job (or replaces its entry). */
  add(entry: JobIndexEntry): void {
    if (this.#byId.has(entry.id)) this.remove(entry.id, false);
    const e: JobIndexEntry = {
      ...entry,
      // randomUUID() returns a rope of ~20 pieces (~490 bytes on the heap); a flat copy is ~65.
      id: Buffer.from(entry.id).toString(),
      owner: this.#intern(entry.owner),
      dut: this.#intern(entry.dut),
    };
    this.#byId.set(e.id, e);
    this.#bytes += e.bytes;
    const at = this.#insertionPoint(e);
    // New jobs are the newest: the common case is a push, not a splice.
    if (at === this.#sorted.length) this.#sorted.push(e);
    else this.#sorted.splice(at, 0, e);
  }

  /** Sets a job's size. */
  setBytes(id: string, bytes: number, measured: boolean): void {
    const e = this.#byId.get(id);
    if (!e) return;
    this.#bytes += bytes - e.bytes;
    e.bytes = bytes;
    e.measured = measured;
  }

  /** Removes jobs; with `pruned`, their ids are remembered (bounded) as pruned. */
  removeMany(ids: Iterable<string>, pruned: boolean): void {
    const gone = new Set<string>();
    for (const id of ids) {
      const e = this.#byId.get(id);
      if (!e) continue;
      this.#byId.delete(id);
      this.#bytes -= e.bytes;
      gone.add(id);
      if (pruned) this.#remember(id);
    }
    if (gone.size > 0) this.#sorted = this.#sorted.filter((e) => !gone.has(e.id));
  }

  /** Removes one job. */
  remove(id: string, pruned: boolean): void {
    this.removeMany([id], pruned);
  }

  /**
   * Up to `limit` jobs matching `filter`, newest first, starting after `cursor`; `more` says
   * whether a further page may hold matches.
   */
  page(filter: JobFilter, limit: number, cursor?: JobCursor): { jobs: JobIndexEntry[]; more: boolean } {
    const states = filter.states && filter.states.length > 0 ? new Set(filter.states) : undefined;
    let i = cursor ? this.#insertionPoint(cursor) - 1 : this.#sorted.length - 1;
    const jobs: JobIndexEntry[] = [];
    for (; i >= 0; i--) {
      const e = this.#sorted[i]!;
      if (states && !states.has(e.state)) continue;
      if (filter.owner && e.owner !== filter.owner) continue;
      if (filter.dut && e.dut !== filter.dut) continue;
      if (jobs.length === limit) return { jobs, more: true };
      jobs.push(e);
    }
    return { jobs, more: false };
  }

  /** Count of jobs in each state. */
  countByState(): Map<JobStateName, number> {
    const counts = new Map<JobStateName, number>();
    for (const e of this.#sorted) counts.set(e.state, (counts.get(e.state) ?? 0) + 1);
    return counts;
  }

  /** First index whose key is ≥ `key` (binary search over the sorted entries). */
  #insertionPoint(key: JobCursor): number {
    let lo = 0;
    let hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.#sorted[mid]!;
      if (e.createdAt < key.createdAt || (e.createdAt === key.createdAt && e.id < key.id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #remember(id: string): void {
    this.#pruned.add(id);
    if (this.#pruned.size > TOMBSTONES_KEPT) {
      // A Set iterates in insertion order: the first is the oldest tombstone.
      const oldest = this.#pruned.values().next().value;
      if (oldest !== undefined) this.#pruned.delete(oldest);
    }
  }

  #intern(s: string): string {
    const known = this.#strings.get(s);
    if (known !== undefined) return known;
    // Bounded by the distinct owners and DUTs a jig ever sees; a flood of names is not expected
    // (owners are certificate names), but cap it anyway.
    if (this.#strings.size < 10_000) this.#strings.set(s, s);
    return s;
  }
}
