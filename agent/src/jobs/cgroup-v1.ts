/**
 * Job cgroups on hosts where only cgroup v1 controllers are usable: limits through the v1
 * memory, cpu and pids hierarchies; kill and emptiness through a tracker dir. The tracker is a
 * dir in the controller-less v2 `unified` mount when the host has one (hybrid: cgroup.kill and
 * inotify on cgroup.events), else the v1 freezer (freeze, kill, thaw, re-check), else only a
 * repeated kill of whatever cgroup.procs lists.
 */
import { join } from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import {
  CPU_PERIOD_US,
  errnoOf,
  KILL_SETTLE_MS,
  type LimitWrite,
  listPids,
  makeCgroupDir,
  readCgroupFile,
  recheckUntil,
  removeCgroupDir,
  UnifiedCgroup,
  writeCgroupFile,
} from './cgroup-v2.js';
import type { CgroupPaths, JobCgroup, JobCgroupFactory, JobLimits, TrackerKind } from './job-cgroup.js';

/** How long to wait for freezer.state to reach FROZEN (tasks in D state delay it). */
const FREEZE_WAIT_MS = 1000;
/** Without a freezer, how long one kill round waits before killing what forked meanwhile. */
const KILL_ROUND_MS = 50;

/** The v1 controllers a job's limits need. */
export type V1Controller = 'memory' | 'cpu' | 'pids';

/** The control files each v1 controller dir gets for `limits` (0 = unlimited), in write order. */
export function v1LimitWrites(limits: JobLimits): Record<V1Controller, LimitWrite[]> {
  const memory = limits.memoryBytes > 0 ? String(limits.memoryBytes) : '-1';
  return {
    memory: [
      { file: 'memory.limit_in_bytes', value: memory },
      // memory+swap at the same value keeps a job on a host with swap from paging out instead of
      // meeting its limit. Absent without swap accounting; EINVAL if the kernel disagrees.
      { file: 'memory.memsw.limit_in_bytes', value: memory, optional: true },
    ],
    cpu: [
      { file: 'cpu.cfs_period_us', value: String(CPU_PERIOD_US) },
      {
        file: 'cpu.cfs_quota_us',
        value: limits.cpuMillis > 0 ? String(limits.cpuMillis * (CPU_PERIOD_US / 1000)) : '-1',
      },
    ],
    pids: [{ file: 'pids.max', value: limits.pidsMax > 0 ? String(limits.pidsMax) : 'max' }],
  };
}

/** Creates v1 job cgroups: one dir per limit controller plus the tracker dir, if any. */
export class CgroupV1Containment implements JobCgroupFactory {
  /** Namespace dirs, one per controller hierarchy; `tracker` is null when neither is usable. */
  constructor(
    readonly namespaceDirs: Record<V1Controller, string>,
    readonly tracker: { kind: TrackerKind; namespaceDir: string } | null,
  ) {}

  async create(jobId: string, limits: JobLimits): Promise<JobCgroup> {
    const created: string[] = [];
    const writes = v1LimitWrites(limits);
    try {
      for (const controller of ['memory', 'cpu', 'pids'] as const) {
        const dir = join(this.namespaceDirs[controller], jobId);
        await makeCgroupDir(dir);
        created.push(dir);
        for (const w of writes[controller]) {
          await writeCgroupFile(join(dir, w.file), w.value, `applying the limits of job ${jobId}`, {
            tolerate: w.optional ? ['ENOENT', 'EINVAL'] : [],
          });
        }
      }
      let tracker: CgroupPaths['tracker'];
      if (this.tracker) {
        const dir = join(this.tracker.namespaceDir, jobId);
        await makeCgroupDir(dir);
        created.push(dir);
        tracker = { kind: this.tracker.kind, dir };
      }
      return adoptV1({ mode: 'cgroup-v1', dirs: [...created], ...(tracker ? { tracker } : {}) });
    } catch (err) {
      // Nothing has joined these dirs yet, so rmdir cannot meet processes.
      for (const dir of created.reverse()) await removeCgroupDir(dir);
      throw err;
    }
  }
}

/** Opens the v1 job cgroup described by `paths` (validated by the caller). */
export function adoptV1(paths: CgroupPaths): JobCgroup {
  const t = paths.tracker;
  const tracker: Tracker =
    t?.kind === 'unified'
      ? new UnifiedCgroup(t.dir, paths)
      : new ProcsTracker(t?.dir ?? paths.dirs[0]!, t?.kind === 'freezer');
  return new V1JobCgroup(paths, tracker);
}

type Tracker = Pick<JobCgroup, 'pids' | 'isEmpty' | 'waitEmpty' | 'killAll'>;

class V1JobCgroup implements JobCgroup {
  readonly procsFiles: string[];

  constructor(
    readonly paths: CgroupPaths,
    private readonly tracker: Tracker,
  ) {
    this.procsFiles = paths.dirs.map((d) => join(d, 'cgroup.procs'));
  }

  pids(): Promise<number[]> {
    return this.tracker.pids();
  }

  isEmpty(): Promise<boolean> {
    return this.tracker.isEmpty();
  }

  waitEmpty(timeoutMs: number): Promise<boolean> {
    return this.tracker.waitEmpty(timeoutMs);
  }

  killAll(): Promise<void> {
    return this.tracker.killAll();
  }

  async oomKilled(): Promise<boolean> {
    // Only the memory dir has memory.oom_control; the others read as absent.
    for (const dir of this.paths.dirs) {
      const text = await readCgroupFile(join(dir, 'memory.oom_control'), 'reading the OOM count of a job');
      if (Number(/^oom_kill (\d+)$/m.exec(text ?? '')?.[1] ?? 0) > 0) return true;
    }
    return false;
  }

  async remove(): Promise<void> {
    for (const dir of this.paths.dirs) await removeCgroupDir(dir);
  }
}

/** Tracks a v1 dir by its cgroup.procs: v1 raises no event when a cgroup empties. */
class ProcsTracker implements Tracker {
  constructor(
    private readonly dir: string,
    private readonly freezer: boolean,
  ) {}

  pids(): Promise<number[]> {
    return listPids(join(this.dir, 'cgroup.procs'), 'listing the processes of a job');
  }

  async isEmpty(): Promise<boolean> {
    return (await this.pids()).length === 0;
  }

  waitEmpty(timeoutMs: number): Promise<boolean> {
    return recheckUntil(() => this.isEmpty(), timeoutMs);
  }

  async killAll(): Promise<void> {
    const deadline = performance.now() + KILL_SETTLE_MS;
    while (performance.now() < deadline) {
      if (this.freezer) {
        // Frozen tasks cannot fork, so the list read below is complete and stays so.
        if (!(await this.setFreezer('FROZEN'))) return;
        await recheckUntil(async () => (await this.freezerState()) !== 'FREEZING', FREEZE_WAIT_MS);
      }
      try {
        for (const pid of await this.pids()) sigkill(pid);
      } finally {
        // SIGKILL takes effect only once a frozen task runs again.
        if (this.freezer) await this.setFreezer('THAWED');
      }
      const round = this.freezer ? deadline - performance.now() : KILL_ROUND_MS;
      if (await this.waitEmpty(Math.max(0, round))) return;
    }
    const left = await this.pids();
    throw new JigletError(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `processes ${left.join(', ')} of ${this.dir} are still alive ${KILL_SETTLE_MS} ms after SIGKILL ` +
        '(likely stuck in uninterruptible sleep, e.g. on a hung device or NFS)',
    );
  }

  /** False when the cgroup is gone, i.e. there is nothing left to kill. */
  private setFreezer(state: 'FROZEN' | 'THAWED'): Promise<boolean> {
    return writeCgroupFile(join(this.dir, 'freezer.state'), state, `setting the job's freezer to ${state}`, {
      tolerate: ['ENOENT'],
    });
  }

  private async freezerState(): Promise<string | null> {
    const text = await readCgroupFile(join(this.dir, 'freezer.state'), "reading the job's freezer state");
    return text?.trim() ?? null;
  }
}

function sigkill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    // ESRCH: it exited between the listing and the kill, which is the goal anyway.
    if (errnoOf(err) !== 'ESRCH') throw err;
  }
}
