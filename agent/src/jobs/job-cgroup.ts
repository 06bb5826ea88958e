/**
 * The contract of per-job containment: what a job's cgroup(s) can do, where they are recorded,
 * and the limits they apply. cgroup-v2.ts, cgroup-v1.ts and no-containment.ts implement it;
 * containment.ts picks one for the host.
 */

/** How a v1 job's membership is tracked for kill and emptiness: the controller-less v2 `unified` mount, or the v1 freezer. */
export type TrackerKind = 'unified' | 'freezer';

/** Resource limits; 0 = unlimited. cpuMillis 500 = half a CPU. */
export interface JobLimits {
  memoryBytes: number;
  cpuMillis: number;
  pidsMax: number;
}

/** How jobs are contained on this host. */
export type ContainmentMode = 'cgroup-v2' | 'cgroup-v1' | 'none';

/** Where a job's cgroups are; JSON-serialisable, stored in the job record for a restarted agent. */
export interface CgroupPaths {
  mode: ContainmentMode;
  dirs: string[];
  /** cgroup-v1 only: which of `dirs` is watched for emptiness and used to kill (absent: kill loop). */
  tracker?: { kind: TrackerKind; dir: string };
}

/** Creates job cgroups; what detectContainment returns. */
export interface Containment {
  readonly mode: ContainmentMode;
  /** Creates the job's cgroup(s) with limits applied. */
  create(jobId: string, limits: JobLimits): Promise<JobCgroup>;
  /** Re-opens a job cgroup recorded before an agent restart (dirs may no longer exist). */
  adopt(paths: CgroupPaths): JobCgroup;
  /** Removes this agent's namespace dirs; false (and nothing removed) while job cgroups remain. */
  removeNamespace(): Promise<boolean>;
}

/** One job's cgroup(s). */
export interface JobCgroup {
  readonly paths: CgroupPaths;
  /** Files a shim writes its own pid into before exec'ing the job, so every descendant is contained. */
  readonly procsFiles: string[];
  /** Pids of the processes in the job's cgroup. */
  pids(): Promise<number[]>;
  /** True when no process is left (or the cgroup is gone). */
  isEmpty(): Promise<boolean>;
  /** True once empty, false when `timeoutMs` passes first; event-driven where the kernel allows. */
  waitEmpty(timeoutMs: number): Promise<boolean>;
  /** SIGKILLs every process in the cgroup (setsid escapees and fork loops included), then waits for empty. */
  killAll(): Promise<void>;
  /** True when the kernel OOM-killed a process of this job. */
  oomKilled(): Promise<boolean>;
  /** Removes the cgroup dirs; idempotent, missing dirs are fine. */
  remove(): Promise<void>;
}

/** What a containment implementation provides; detectContainment adds the checks and adoption. */
export interface JobCgroupFactory {
  /** Creates the job's cgroup(s); `jobId` and `limits` are already validated. */
  create(jobId: string, limits: JobLimits): Promise<JobCgroup>;
}
