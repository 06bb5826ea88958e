/**
 * Per-job containment: the cgroup(s) a job runs in, its limits, whole-tree kill and OOM
 * detection. cgroup v2 where its controllers are usable; cgroup v1 controllers where only they
 * are (our CI machines), tracked through the controller-less v2 `unified` mount when present;
 * otherwise none, with a warning. The contract is job-cgroup.ts; this file holds the checks every
 * implementation shares (limits, job ids, recorded paths) and the host detection.
 */
import { constants, existsSync } from 'node:fs';
import { access, mkdir, rmdir } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { adoptV1, CgroupV1Containment, type V1Controller } from './cgroup-v1.js';
import { CgroupV2Containment, errnoOf, readCgroupFile, UnifiedCgroup, writeCgroupFile } from './cgroup-v2.js';
import type {
  CgroupPaths,
  Containment,
  ContainmentMode,
  JobCgroup,
  JobCgroupFactory,
  JobLimits,
  TrackerKind,
} from './job-cgroup.js';
import { NoJobCgroup, noContainment } from './no-containment.js';

export type {
  CgroupPaths,
  Containment,
  ContainmentMode,
  JobCgroup,
  JobCgroupFactory,
  JobLimits,
  TrackerKind,
} from './job-cgroup.js';

/** Where cgroup filesystems are mounted on Linux. */
const DEFAULT_ROOT = '/sys/fs/cgroup';
/** Below this a job cannot even exec a shell; a smaller value is almost surely a unit mistake. */
const MIN_MEMORY_BYTES = 1024 * 1024;
/** The kernel refuses CFS quotas under 1 ms, i.e. 10 millicpu of a 100 ms period. */
const MIN_CPU_MILLIS = 10;
/** PID_MAX_LIMIT on 64-bit kernels; pids.max accepts nothing larger. */
const MAX_PIDS = 4_194_304;
const CONTROLLERS = ['memory', 'cpu', 'pids'] as const;
/** One path component: a job id or an agent namespace. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws JIGLET_E_INVALID_ARGUMENT, naming the field, unless every limit is usable. */
export function validateLimits(limits: JobLimits): void {
  const whole = (field: keyof JobLimits, unit: string): number => {
    const value = limits[field];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw invalidArgument(
        `limits.${field} is ${value}; it must be a whole number of ${unit}, or 0 for no limit`,
      );
    }
    return value;
  };
  const memory = whole('memoryBytes', 'bytes');
  if (memory > 0 && memory < MIN_MEMORY_BYTES) {
    throw invalidArgument(
      `limits.memoryBytes is ${memory} bytes, too small to run anything; give at least 1 MiB (${MIN_MEMORY_BYTES}) or 0 for no limit`,
    );
  }
  const cpu = whole('cpuMillis', 'thousandths of a CPU');
  if (cpu > 0 && cpu < MIN_CPU_MILLIS) {
    throw invalidArgument(
      `limits.cpuMillis is ${cpu}; the kernel's smallest CPU quota is ${MIN_CPU_MILLIS} (1% of a CPU), or 0 for no limit`,
    );
  }
  const pids = whole('pidsMax', 'processes');
  if (pids > MAX_PIDS)
    throw invalidArgument(`limits.pidsMax is ${pids}; the kernel allows at most ${MAX_PIDS}`);
}

/** Picks the best containment this host offers; see the file comment for the order. */
export async function detectContainment(opts: {
  root?: string;
  namespace: string;
  log: (msg: string) => void;
}): Promise<Containment> {
  const root = normalize(opts.root ?? DEFAULT_ROOT).replace(/(.)\/$/, '$1');
  const { namespace, log } = opts;
  if (!NAME.test(namespace)) {
    throw invalidArgument(
      `namespace "${namespace}" must be one path component of letters, digits, '.', '_', '-'`,
    );
  }
  const own = await ownCgroups();
  const why: string[] = [];

  const v2 = await probeV2(root, own.get(''), namespace, why);
  if (v2) return new CheckedContainment('cgroup-v2', new CgroupV2Containment(v2), root, namespace, [v2]);

  const v1: Partial<Record<V1Controller, string>> = {};
  for (const c of CONTROLLERS) {
    const dir = await probeHierarchy(join(root, c), own.get(c), namespace, why);
    if (!dir) break;
    v1[c] = dir;
  }
  if (v1.memory && v1.cpu && v1.pids) {
    const limitDirs = { memory: v1.memory, cpu: v1.cpu, pids: v1.pids };
    // cgroup.kill and cgroup.events (kernel 5.14+) make kill and empty-tracking exact.
    const unified = await probeHierarchy(join(root, 'unified'), own.get(''), namespace, why, 'cgroup.kill');
    const freezer = unified
      ? null
      : await probeHierarchy(join(root, 'freezer'), own.get('freezer'), namespace, why);
    const tracker = unified
      ? { kind: 'unified' as const, namespaceDir: unified }
      : freezer
        ? { kind: 'freezer' as const, namespaceDir: freezer }
        : null;
    if (!tracker) {
      log(
        `cgroup v1 without the unified v2 mount or the freezer (${why.join('; ')}): limits apply, but killing a ` +
          'job that forks in a loop is a repeated kill that may take several rounds',
      );
    }
    const nsDirs = [...Object.values(limitDirs), ...(tracker ? [tracker.namespaceDir] : [])];
    return new CheckedContainment(
      'cgroup-v1',
      new CgroupV1Containment(limitDirs, tracker),
      root,
      namespace,
      nsDirs,
    );
  }

  log(
    `no usable cgroups under ${root} (${why.join('; ')}): jobs run without memory, CPU and pids limits, and ` +
      'stopping a job cannot kill processes that left its process group (setsid, double fork)',
  );
  return new CheckedContainment('none', noContainment, root, namespace, []);
}

class CheckedContainment implements Containment {
  constructor(
    readonly mode: ContainmentMode,
    private readonly factory: JobCgroupFactory,
    private readonly root: string,
    private readonly namespace: string,
    private readonly namespaceDirs: readonly string[],
  ) {}

  async create(jobId: string, limits: JobLimits): Promise<JobCgroup> {
    if (!NAME.test(jobId)) {
      throw invalidArgument(
        `job id "${jobId.slice(0, 80)}" cannot name a cgroup: use letters, digits, '.', '_', '-'`,
      );
    }
    validateLimits(limits);
    return this.factory.create(jobId, limits);
  }

  adopt(paths: CgroupPaths): JobCgroup {
    this.#checkRecorded(paths);
    // The record's own mode decides, so a job from a run with other containment is still cleaned up.
    switch (paths.mode) {
      case 'cgroup-v2':
        return new UnifiedCgroup(paths.dirs[0]!, paths);
      case 'cgroup-v1':
        return adoptV1(paths);
      case 'none':
        return new NoJobCgroup(paths);
    }
  }

  async removeNamespace(): Promise<boolean> {
    let allGone = true;
    for (const dir of this.namespaceDirs) {
      try {
        await rmdir(dir);
      } catch (err) {
        const code = errnoOf(err);
        // cgroupfs answers EBUSY for a cgroup that still has child cgroups.
        if (code === 'EBUSY' || code === 'ENOTEMPTY') allGone = false;
        else if (code !== 'ENOENT') {
          throw new JigletError('JIGLET_E_INTERNAL', `removing cgroup namespace ${dir}: ${code}`, {
            cause: err,
          });
        }
      }
    }
    return allGone;
  }

  /**
   * A record is data from disk: before killing whatever a dir lists, make sure it is one of this
   * agent's job cgroups and not, through corruption, a hierarchy root holding the whole host.
   */
  #checkRecorded(paths: CgroupPaths): void {
    const dirs: unknown = paths?.dirs;
    const countOk = (n: number): boolean =>
      paths.mode === 'cgroup-v2' ? n === 1 : paths.mode === 'none' ? n === 0 : n >= 1;
    if (!isMode(paths?.mode) || !Array.isArray(dirs) || !countOk(dirs.length)) {
      throw invalidArgument(`recorded cgroup paths ${JSON.stringify(paths)} are malformed`);
    }
    for (const dir of dirs) {
      const ok =
        typeof dir === 'string' &&
        isAbsolute(dir) &&
        normalize(dir) === dir &&
        dir.startsWith(`${this.root}/`) &&
        basename(dirname(dir)) === this.namespace &&
        NAME.test(basename(dir));
      if (!ok) {
        throw invalidArgument(
          `recorded cgroup ${JSON.stringify(dir)} is not a job cgroup of this agent ` +
            `(${this.root}/…/${this.namespace}/<job id>); refusing to kill or remove anything there`,
        );
      }
    }
    const t = paths.tracker;
    if (t !== undefined && (paths.mode !== 'cgroup-v1' || !dirs.includes(t.dir) || !isTracker(t.kind))) {
      throw invalidArgument(`recorded cgroup tracker ${JSON.stringify(t)} is not one of the job's v1 dirs`);
    }
  }
}

function isMode(mode: unknown): mode is ContainmentMode {
  return mode === 'cgroup-v2' || mode === 'cgroup-v1' || mode === 'none';
}

function isTracker(kind: unknown): kind is TrackerKind {
  return kind === 'unified' || kind === 'freezer';
}

/** The agent's own cgroup path per v1 controller; '' keys the v2 (unified) path. */
async function ownCgroups(): Promise<Map<string, string>> {
  const own = new Map<string, string>();
  const text = await readCgroupFile('/proc/self/cgroup', 'finding the cgroups the agent runs in');
  for (const line of (text ?? '').split('\n')) {
    const [id, controllers, ...rest] = line.split(':');
    const path = rest.join(':');
    // "/.." shows up when the agent sits outside its cgroup namespace root: nothing to nest under.
    if (id === undefined || controllers === undefined || !path.startsWith('/') || path.includes('/..')) {
      continue;
    }
    if (id === '0' && controllers === '') own.set('', path);
    else for (const c of controllers.split(',')) own.set(c, path);
  }
  return own;
}

/** The agent's own cgroup first (nesting keeps the host tidy), then the hierarchy's root. */
function bases(mount: string, ownPath: string | undefined): string[] {
  const nested = ownPath ? join(mount, ownPath) : mount;
  return nested === mount ? [mount] : [nested, mount];
}

/** Makes `<base>/<namespace>` in the first base that allows it; reasons for failures go to `why`. */
async function probeHierarchy(
  mount: string,
  ownPath: string | undefined,
  namespace: string,
  why: string[],
  needFile?: string,
): Promise<string | null> {
  if (!existsSync(join(mount, 'cgroup.procs'))) {
    why.push(`no cgroup hierarchy at ${mount}`);
    return null;
  }
  for (const base of bases(mount, ownPath)) {
    const dir = join(base, namespace);
    try {
      await mkdirExistOk(dir);
      await access(dir, constants.W_OK);
    } catch (err) {
      why.push(`cannot use ${dir}: ${errnoOf(err) ?? String(err)}`);
      continue;
    }
    // Existence only: cgroup.kill is write-only, reading it fails with EINVAL.
    if (needFile && !existsSync(join(dir, needFile))) {
      why.push(`${dir} has no ${needFile} (kernel too old)`);
      return null;
    }
    return dir;
  }
  return null;
}

/**
 * A cgroup2 root at `root` whose memory, cpu and pids can be delegated to a namespace dir.
 * v2 forbids enabling controllers for children of a cgroup that has processes ("no internal
 * processes"), so nesting under the agent's own cgroup usually fails and the root, which is
 * exempt, is the fallback.
 */
async function probeV2(root: string, ownPath: string | undefined, namespace: string, why: string[]) {
  if (!existsSync(join(root, 'cgroup.controllers'))) {
    why.push(`no cgroup2 hierarchy at ${root}`);
    return null;
  }
  const enable = CONTROLLERS.map((c) => `+${c}`).join(' ');
  for (const base of bases(root, ownPath)) {
    const dir = join(base, namespace);
    try {
      const offered = (
        (await readCgroupFile(join(base, 'cgroup.controllers'), 'probing cgroup v2')) ?? ''
      ).split(/\s+/);
      const missing = CONTROLLERS.filter((c) => !offered.includes(c));
      if (missing.length > 0) {
        why.push(`${base} does not offer the cgroup v2 ${missing.join(', ')} controller(s)`);
        continue;
      }
      await writeCgroupFile(join(base, 'cgroup.subtree_control'), enable, 'delegating v2 controllers');
      await mkdirExistOk(dir);
      await writeCgroupFile(join(dir, 'cgroup.subtree_control'), enable, 'delegating v2 controllers');
      return dir;
    } catch (err) {
      why.push(err instanceof Error ? err.message : String(err));
    }
  }
  return null;
}

async function mkdirExistOk(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
  }
}
