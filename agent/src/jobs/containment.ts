/**
 * Per-job containment: the cgroup(s) a job runs in, its limits, whole-tree kill and OOM
 * detection. cgroup v2 where its controllers are usable; cgroup v1 controllers where only they
 * are (our CI machines), plus the controller-less v2 hierarchy for cgroup.kill when mounted;
 * otherwise none, with a warning.
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { CgroupJob } from './cgroup-job.js';

/** Resource limits; 0 = unlimited. cpuMillis 500 = half a CPU. */
export interface JobLimits {
  memoryBytes: number;
  cpuMillis: number;
  pidsMax: number;
}

/** How jobs are contained on this host. */
export type ContainmentMode = 'cgroup-v2' | 'cgroup-v1' | 'none';

/** Where a job's cgroups are; stored in the job record so a restarted agent can clean up. */
export interface CgroupPaths {
  mode: ContainmentMode;
  dirs: string[];
}

/** Creates job cgroups. */
export interface Containment {
  readonly mode: ContainmentMode;
  /** Creates the job's cgroup(s) with limits applied. */
  create(jobId: string, limits: JobLimits): Promise<JobCgroup>;
  /** Re-opens a job cgroup recorded before an agent restart (its dirs may be gone). */
  adopt(paths: CgroupPaths): JobCgroup;
}

/** One job's cgroup(s). */
export interface JobCgroup {
  readonly paths: CgroupPaths;
  /** Files the shim writes its pid into before exec'ing the job. */
  readonly procsFiles: string[];
  pids(): Promise<number[]>;
  isEmpty(): Promise<boolean>;
  /** True once empty; false if `timeoutMs` passes first. */
  waitEmpty(timeoutMs: number): Promise<boolean>;
  /** SIGKILLs every process in the cgroup, setsid escapees and fork loops included. */
  killAll(): Promise<void>;
  /** The kernel's OOM killer ended a process of this job. */
  oomKilled(): Promise<boolean>;
  /** Removes the cgroup dirs; idempotent. */
  remove(): Promise<void>;
}

const V1_LIMIT_CONTROLLERS = ['memory', 'cpu', 'pids'] as const;
const V2_CONTROLLERS = ['memory', 'cpu', 'pids'] as const;
/** CFS period; quota = cpuMillis/1000 of it. */
const CPU_PERIOD_US = 100_000;

/** Picks the best containment this host offers. */
export async function detectContainment(opts: {
  root?: string;
  namespace: string;
  log: (msg: string) => void;
}): Promise<Containment> {
  const root = opts.root ?? '/sys/fs/cgroup';
  const v2 = tryV2(root, opts.namespace);
  if (v2) return v2;
  const v1 = tryV1(root, opts.namespace);
  if (v1) return v1;
  opts.log(
    `no writable cgroups under ${root}: jobs run without memory/cpu/pids limits, and a process that leaves its process group (setsid) escapes stop`,
  );
  return noContainment;
}

function tryV2(root: string, namespace: string): Containment | null {
  const controllersFile = join(root, 'cgroup.controllers');
  if (!existsSync(controllersFile)) return null;
  const available = readFileSync(controllersFile, 'utf8').trim().split(/\s+/);
  if (!V2_CONTROLLERS.every((c) => available.includes(c))) return null;
  const base = join(root, namespace);
  try {
    // The root cgroup is exempt from "no internal processes", so the namespace hangs off it.
    writeFileSync(join(root, 'cgroup.subtree_control'), V2_CONTROLLERS.map((c) => `+${c}`).join(' '));
    mkdirSync(base, { recursive: true });
    writeFileSync(join(base, 'cgroup.subtree_control'), V2_CONTROLLERS.map((c) => `+${c}`).join(' '));
  } catch {
    return null;
  }
  return {
    mode: 'cgroup-v2',
    async create(jobId, limits) {
      const dir = join(base, jobId);
      mkdirSync(dir);
      const job = new CgroupJob({ mode: 'cgroup-v2', dirs: [dir] });
      try {
        if (limits.memoryBytes > 0) {
          writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
          writeIfPresent(join(dir, 'memory.swap.max'), '0');
        }
        if (limits.cpuMillis > 0) {
          writeFileSync(
            join(dir, 'cpu.max'),
            `${(limits.cpuMillis * CPU_PERIOD_US) / 1000} ${CPU_PERIOD_US}`,
          );
        }
        if (limits.pidsMax > 0) writeFileSync(join(dir, 'pids.max'), String(limits.pidsMax));
      } catch (err) {
        await job.remove();
        throw err;
      }
      return job;
    },
    adopt: (paths) => new CgroupJob(paths),
  };
}

function tryV1(root: string, namespace: string): Containment | null {
  const bases: string[] = [];
  for (const c of V1_LIMIT_CONTROLLERS) {
    const dir = join(root, c);
    if (!writable(dir)) return null;
    bases.push(join(dir, namespace));
  }
  // Tracking and kill: the v2 hierarchy mounted beside v1 (hybrid) offers cgroup.kill and
  // cgroup.events; without it, the v1 freezer stops fork loops while we kill.
  const unified = join(root, 'unified');
  const freezer = join(root, 'freezer');
  if (existsSync(join(unified, 'cgroup.procs')) && writable(unified)) bases.unshift(join(unified, namespace));
  else if (writable(freezer)) bases.unshift(join(freezer, namespace));
  try {
    for (const b of bases) mkdirSync(b, { recursive: true });
  } catch {
    return null;
  }
  return {
    mode: 'cgroup-v1',
    async create(jobId, limits) {
      const dirs = bases.map((b) => join(b, jobId));
      for (const d of dirs) mkdirSync(d);
      const job = new CgroupJob({ mode: 'cgroup-v1', dirs });
      try {
        const [memory, cpu, pids] = dirs.slice(-3) as [string, string, string];
        if (limits.memoryBytes > 0) {
          writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
          // Without this the job would swap instead of hitting its limit (where swap exists).
          writeIfPresent(join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
        }
        if (limits.cpuMillis > 0) {
          writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
          writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String((limits.cpuMillis * CPU_PERIOD_US) / 1000));
        }
        if (limits.pidsMax > 0) writeFileSync(join(pids, 'pids.max'), String(limits.pidsMax));
      } catch (err) {
        await job.remove();
        throw err;
      }
      return job;
    },
    adopt: (paths) => new CgroupJob(paths),
  };
}

const noCgroup: JobCgroup = {
  paths: { mode: 'none', dirs: [] },
  procsFiles: [],
  pids: async () => [],
  isEmpty: async () => true,
  waitEmpty: async () => true,
  killAll: async () => undefined,
  oomKilled: async () => false,
  remove: async () => undefined,
};

const noContainment: Containment = {
  mode: 'none',
  create: async () => noCgroup,
  adopt: () => noCgroup,
};

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.jiglet-probe-${process.pid}`);
    mkdirSync(probe);
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

function writeIfPresent(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Kernels without swap accounting lack the file or refuse the value; the RAM limit still holds.
    if (code !== 'ENOENT' && code !== 'EINVAL' && code !== 'EACCES') throw err;
  }
}
