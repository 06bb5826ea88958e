/**
 * Which finished jobs the retention policy removes (issue 11): a pure function of the job index,
 * the lease spans and the clock, so the rules can be read, and tested, in one place.
 *
 * - A job that is not over is never pruned.
 * - A job that ran on a DUT during a lease that is still held is never pruned: the lease's
 *   report (timeline, serial) needs it, whatever the size bounds say.
 * - A job that ran during a lease that has ended is kept like a user's job, counted from the
 *   lease's end, so a lease's report stays whole for as long as its users' jobs are kept.
 * - Otherwise agent-owned jobs (power actions, health checks, restarted captures) are kept
 *   `agentJobMaxAgeMs` after they ended, users' jobs `userJobMaxAgeMs`.
 * - Over `maxJobs` or `maxBytes`, the prunable jobs go oldest first, agent-owned ones before
 *   any user's, until both bounds hold again.
 */
import { AGENT_OWNER } from '../jig/job-keeper.js';
import type { JobIndexEntry } from './job-index.js';
import { isFinal } from './job-state.js';

const DAY_MS = 24 * 3600 * 1000;

/** The retention settings (the config file's `retention:` section, in milliseconds and bytes). */
export interface RetentionPolicy {
  /** How long a user's finished job is kept after it ended. */
  userJobMaxAgeMs: number;
  /** How long an agent-owned finished job (owner `@jiglet`) is kept after it ended. */
  agentJobMaxAgeMs: number;
  /** Most bytes all job folders (records, logs, work dirs) may take together. */
  maxBytes: number;
  /** Most jobs kept, live ones included. */
  maxJobs: number;
  /** Time between background prunes. */
  intervalMs: number;
  /** A prune also runs after this many jobs ended since the last one. */
  pruneEveryJobs: number;
  /**
   * Most bytes a DUT's live serial log keeps: a capture runs for as long as the agent, so its
   * log is bounded in place (its oldest part dropped) rather than by pruning whole jobs.
   */
  serialLogMaxBytes: number;
  /**
   * Size at which a DUT's run-record journal is rotated (one old file kept, so a DUT's record
   * takes at most twice this); the lease index rotates at a quarter of it.
   */
  journalMaxBytes: number;
}

/**
 * Defaults for a jig left alone for a year: two weeks of users' jobs (a CI failure is looked
 * at within days), two days of power cycles and health checks, at most 5 GiB and 50 000 jobs
 * (an index of ~11 MiB), checked every 10 minutes and after every 500 jobs; the newest 256 MiB
 * of each DUT's serial log (days of a chatty console at 115200 baud); run-record journals of
 * 16 MiB per DUT (months of leases).
 */
export const DEFAULT_RETENTION: RetentionPolicy = {
  userJobMaxAgeMs: 14 * DAY_MS,
  agentJobMaxAgeMs: 2 * DAY_MS,
  maxBytes: 5 * 1024 ** 3,
  maxJobs: 50_000,
  intervalMs: 10 * 60 * 1000,
  pruneEveryJobs: 500,
  serialLogMaxBytes: 256 * 1024 ** 2,
  journalMaxBytes: 16 * 1024 ** 2,
};

/** A lease's time on a DUT; `to` is undefined while the lease is held. */
export interface LeaseSpan {
  dut: string;
  from: number;
  to?: number;
}

/** Why a job was chosen. */
export type PruneReason = 'age' | 'count' | 'bytes';

/** The jobs to prune, each with its reason; `pinned` counts jobs kept for a held lease. */
export interface PrunePlan {
  prune: { entry: JobIndexEntry; reason: PruneReason }[];
  pinned: number;
}

/** Decides what to prune; `entries` is the whole index. */
export function planPrune(
  entries: readonly JobIndexEntry[],
  spans: readonly LeaseSpan[],
  policy: RetentionPolicy,
  now: number,
): PrunePlan {
  const spansByDut = new Map<string, LeaseSpan[]>();
  for (const s of spans) {
    const list = spansByDut.get(s.dut) ?? [];
    list.push(s);
    spansByDut.set(s.dut, list);
  }
  const prune: PrunePlan['prune'] = [];
  const candidates: { entry: JobIndexEntry; rank: number; clock: number }[] = [];
  let pinned = 0;
  let count = entries.length;
  let bytes = 0;
  for (const e of entries) bytes += e.bytes;

  for (const entry of entries) {
    if (!isFinal(entry.state)) continue;
    const ended = entry.endedAt ?? entry.createdAt;
    let held = false;
    let leaseEnd: number | undefined;
    for (const s of entry.dut ? (spansByDut.get(entry.dut) ?? []) : []) {
      if (s.from > ended || (s.to !== undefined && s.to < entry.createdAt)) continue;
      if (s.to === undefined) held = true;
      else leaseEnd = Math.max(leaseEnd ?? 0, s.to);
    }
    if (held) {
      pinned++;
      continue;
    }
    const agentOwned = entry.owner === AGENT_OWNER && leaseEnd === undefined;
    const clock = Math.max(ended, leaseEnd ?? 0);
    const maxAge = agentOwned ? policy.agentJobMaxAgeMs : policy.userJobMaxAgeMs;
    if (now - clock > maxAge) {
      prune.push({ entry, reason: 'age' });
      count--;
      bytes -= entry.bytes;
    } else {
      candidates.push({ entry, rank: agentOwned ? 0 : 1, clock });
    }
  }

  if (count > policy.maxJobs || bytes > policy.maxBytes) {
    candidates.sort((a, b) => a.rank - b.rank || a.clock - b.clock);
    for (const c of candidates) {
      if (count <= policy.maxJobs && bytes <= policy.maxBytes) break;
      prune.push({ entry: c.entry, reason: count > policy.maxJobs ? 'count' : 'bytes' });
      count--;
      bytes -= c.entry.bytes;
    }
  }
  return { prune, pinned };
}
