/**
 * One job cgroup in a cgroup v2 hierarchy: membership, whole-tree kill through cgroup.kill and
 * emptiness through inotify on cgroup.events. Used alone on pure-v2 hosts (with memory, cpu and
 * pids limits) and as the kill/empty tracker of hybrid v1 hosts, whose `unified` mount has no
 * controllers but still offers cgroup.kill and cgroup.events.
 * The cgroupfs file helpers at the bottom are shared with cgroup-v1.ts, which builds on this file.
 */
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { JigletError } from '../../../protocol/src/errors.js';
import type { CgroupPaths, JobCgroup, JobCgroupFactory, JobLimits } from './job-cgroup.js';

/** CFS period (v1 and v2); 100 ms is the kernel default and keeps throttling fine-grained. */
export const CPU_PERIOD_US = 100_000;
/** How long killAll waits for the kernel to finish killing before it reports failure. */
export const KILL_SETTLE_MS = 5000;
/** How long remove() retries rmdir while the kernel is still tearing down the last tasks. */
const RMDIR_RETRY_MS = 2000;
/** First and longest interval of a bounded re-check, where the kernel offers no event. */
const RECHECK_FIRST_MS = 5;
const RECHECK_MAX_MS = 100;
/** Largest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A control file write that applies one limit; `optional` files may be absent on some kernels. */
export interface LimitWrite {
  file: string;
  value: string;
  optional?: boolean;
}

/** The control files a v2 job cgroup gets for `limits` (0 = unlimited), in write order. */
export function v2LimitWrites(limits: JobLimits): LimitWrite[] {
  const memory = limits.memoryBytes > 0 ? String(limits.memoryBytes) : 'max';
  return [
    { file: 'memory.max', value: memory },
    // Without this a job on a host with swap pages out instead of meeting its limit; the file
    // is missing when the kernel does no swap accounting, and then there is nothing to stop.
    { file: 'memory.swap.max', value: limits.memoryBytes > 0 ? '0' : 'max', optional: true },
    {
      file: 'cpu.max',
      value: `${limits.cpuMillis > 0 ? limits.cpuMillis * (CPU_PERIOD_US / 1000) : 'max'} ${CPU_PERIOD_US}`,
    },
    { file: 'pids.max', value: limits.pidsMax > 0 ? String(limits.pidsMax) : 'max' },
  ];
}

/** Creates job cgroups under a namespace dir whose subtree has memory, cpu and pids enabled. */
export class CgroupV2Containment implements JobCgroupFactory {
  /** `namespaceDir` must already delegate memory, cpu and pids to its children. */
  constructor(readonly namespaceDir: string) {}

  async create(jobId: string, limits: JobLimits): Promise<JobCgroup> {
    const dir = join(this.namespaceDir, jobId);
    await makeCgroupDir(dir);
    const cgroup = new UnifiedCgroup(dir);
    try {
      for (const w of v2LimitWrites(limits)) {
        await writeCgroupFile(join(dir, w.file), w.value, `applying the limits of job ${jobId}`, {
          tolerate: w.optional ? ['ENOENT'] : [],
        });
      }
    } catch (err) {
      await cgroup.remove();
      throw err;
    }
    return cgroup;
  }
}

/** A job cgroup in a v2 hierarchy (with or without controllers). */
export class UnifiedCgroup implements JobCgroup {
  readonly procsFiles: string[];

  constructor(
    readonly dir: string,
    readonly paths: CgroupPaths = { mode: 'cgroup-v2', dirs: [dir] },
  ) {
    this.procsFiles = [join(dir, 'cgroup.procs')];
  }

  async pids(): Promise<number[]> {
    return listPids(join(this.dir, 'cgroup.procs'), 'listing the processes of a job');
  }

  async isEmpty(): Promise<boolean> {
    const events = await readCgroupFile(
      join(this.dir, 'cgroup.events'),
      'checking whether a job cgroup is empty',
    );
    // `populated` covers descendant cgroups too, unlike cgroup.procs. A missing dir is empty.
    return events === null || /^populated 0$/m.test(events);
  }

  waitEmpty(timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let watcher: FSWatcher | undefined;
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const finish = (result: boolean | Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const settle = (): void => (result instanceof Error ? reject(result) : resolve(result));
        if (watcher) {
          watcher.close();
          // libuv frees a closed handle only in the loop's close phase; settling one iteration
          // later means a caller that counts active handles right after sees none of ours.
          setImmediate(() => setImmediate(settle));
        } else {
          settle();
        }
      };
      const check = (): void => {
        this.isEmpty().then((empty) => {
          if (empty) finish(true);
        }, finish);
      };
      try {
        // The kernel raises IN_MODIFY on cgroup.events whenever `populated` flips.
        watcher = watch(join(this.dir, 'cgroup.events'), { persistent: true });
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') return finish(true);
        return finish(
          new JigletError(
            'JIGLET_E_INTERNAL',
            `cannot watch ${join(this.dir, 'cgroup.events')}: ${String(err)}`,
            {
              cause: err,
            },
          ),
        );
      }
      // rmdir of the cgroup ends the watch with an error or a rename; either way re-read.
      watcher.on('change', check);
      watcher.on('error', check);
      const ms = Number.isNaN(timeoutMs) ? 0 : Math.max(0, timeoutMs);
      // Node fires longer (or infinite) timers after 1 ms; past ~24.8 days, simply wait.
      if (ms <= MAX_TIMER_MS) timer = setTimeout(() => finish(false), ms);
      // Checked after the watch is in place, so an exit in between cannot be missed.
      check();
    });
  }

  async killAll(): Promise<void> {
    // cgroup.kill SIGKILLs every member and makes forks racing with it fail, so one write
    // ends fork loops and setsid escapees alike.
    const present = await writeCgroupFile(
      join(this.dir, 'cgroup.kill'),
      '1',
      'killing the processes of a job',
      {
        tolerate: ['ENOENT'],
      },
    );
    if (!present) return;
    if (!(await this.waitEmpty(KILL_SETTLE_MS))) {
      const left = await this.pids();
      throw new JigletError(
        'JIGLET_E_DEADLINE_EXCEEDED',
        `processes ${left.join(', ')} of ${this.dir} are still alive ${KILL_SETTLE_MS} ms after cgroup.kill ` +
          '(likely stuck in uninterruptible sleep, e.g. on a hung device or NFS)',
      );
    }
  }

  async oomKilled(): Promise<boolean> {
    // Missing without the memory controller (hybrid hosts), where v1 memory reports OOM instead.
    const events = await readCgroupFile(join(this.dir, 'memory.events'), 'reading the OOM count of a job');
    return Number(/^oom_kill (\d+)$/m.exec(events ?? '')?.[1] ?? 0) > 0;
  }

  async remove(): Promise<void> {
    await removeCgroupDir(this.dir);
  }
}

/** The errno code of a Node fs error, if any. */
export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function hostError(doing: string, err: unknown): JigletError {
  const code = errnoOf(err);
  const detail = err instanceof Error ? err.message : String(err);
  return new JigletError('JIGLET_E_INTERNAL', `${doing}: ${code ?? detail}`, { cause: err });
}

/** Reads a cgroup control file; null when it (or its whole cgroup) does not exist. */
export async function readCgroupFile(file: string, doing: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    // ENODEV: the cgroup was removed between the open and the read (kernfs), which is as gone.
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENODEV') return null;
    throw hostError(`${doing}: cannot read ${file}`, err);
  }
}

/**
 * Writes a value to an existing control file; false when the error code is in `tolerate`.
 * Opened without O_CREAT, because kernfs answers a missing file with a misleading EACCES.
 */
export async function writeCgroupFile(
  file: string,
  value: string,
  doing: string,
  opts: { tolerate?: string[] } = {},
): Promise<boolean> {
  try {
    await writeFile(file, value, { flag: 'r+' });
    return true;
  } catch (err) {
    const code = errnoOf(err);
    if (code !== undefined && opts.tolerate?.includes(code)) return false;
    throw hostError(`${doing}: cannot write "${value}" to ${file}`, err);
  }
}

/** The pids listed in a cgroup.procs file; [] when the cgroup is gone. */
export async function listPids(procsFile: string, doing: string): Promise<number[]> {
  const text = await readCgroupFile(procsFile, doing);
  if (text === null) return [];
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map(Number);
}

/** Creates a job cgroup dir; an existing one is an error, as it may hold another job. */
export async function makeCgroupDir(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') {
      throw new JigletError('JIGLET_E_ALREADY_EXISTS', `cgroup ${dir} exists already; refusing to share it`);
    }
    throw hostError(`creating job cgroup ${dir}`, err);
  }
}

/** Removes a cgroup dir, retrying EBUSY briefly while the kernel reaps; a missing dir is fine. */
export async function removeCgroupDir(dir: string): Promise<void> {
  let lastBusy: unknown;
  const removed = await recheckUntil(async () => {
    try {
      await rmdir(dir);
      return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return true;
      if (errnoOf(err) !== 'EBUSY') throw hostError(`removing job cgroup ${dir}`, err);
      lastBusy = err;
      return false;
    }
  }, RMDIR_RETRY_MS);
  if (!removed) {
    throw hostError(
      `removing job cgroup ${dir}: processes are still in it after ${RMDIR_RETRY_MS} ms`,
      lastBusy,
    );
  }
}

/**
 * Re-runs `done` at growing intervals until it returns true (→ true) or `timeoutMs` passes
 * (→ false). For kernel state that raises no event; no timer outlives the call.
 */
export async function recheckUntil(done: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let interval = RECHECK_FIRST_MS;
  for (;;) {
    if (await done()) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await delay(Math.min(interval, left));
    interval = Math.min(interval * 2, RECHECK_MAX_MS);
  }
}
