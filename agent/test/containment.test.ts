/**
 * Job containment against the real /sys/fs/cgroup with real child processes: limits, OOM kill,
 * pids limit, whole-tree kill of setsid escapees and fork loops, waitEmpty without leaks,
 * removal and adoption after a restart. Kill and empty-tracking run twice on v1 hosts: through
 * the unified v2 mount (hybrid) and through the v1 freezer (a root of symlinks without `unified`).
 * Only the "none" mode uses a fake root, since a host without cgroups cannot exist here.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownResourcesLeftBy } from '../../fixtures/test-support/own-resources.js';
import { JigletError } from '../../protocol/src/errors.js';
import { v2LimitWrites } from '../src/jobs/cgroup-v2.js';
import {
  type CgroupPaths,
  type Containment,
  detectContainment,
  type JobCgroup,
  type JobLimits,
} from '../src/jobs/containment.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
/** The supervisor's shim: join every cgroup, then exec the job, so all descendants are inside. */
const SHIM = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
const NO_LIMITS: JobLimits = { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 };
const MiB = 1024 * 1024;
/** A grandchild in its own session that reports its pid only after setsid, then lets go of stdout. */
const ESCAPE = "setsid sh -c 'echo escaped $$; exec sleep 1000 </dev/null >/dev/null 2>&1' &";
let jobSeq = 0;

interface Run {
  child: ChildProcess;
  /** Resolves with [code, signal] once the leader exited. */
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  out(): string;
  err(): string;
  /** Resolves once stdout matches `re`; rejects if stdout closes first. */
  waitOut(re: RegExp): Promise<string>;
}

/** Runs `script` in `cg` through the shim. */
function run(cg: JobCgroup, script: string, shell = '/bin/sh'): Run {
  const child = spawn('/bin/sh', ['-c', SHIM, 'jiglet-shim', ...cg.procsFiles, '--', shell, '-c', script], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const waitOut = (re: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(out);
        if (!m) return;
        child.stdout!.off('data', check);
        child.stdout!.off('close', closed);
        resolve(m[0]);
      };
      const closed = (): void => reject(new Error(`stdout closed without ${re}: ${out} / ${err}`));
      child.stdout!.on('data', check);
      child.stdout!.once('close', closed);
      check();
    });
  return { child, exit, out: () => out, err: () => err, waitOut };
}

/** Session id of a live process; null once it is gone or a zombie. */
function sessionOf(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? null : Number(fields[3]);
}

/** A control file of the job, from whichever of its dirs has it. */
function limitFile(cg: JobCgroup, file: string): string | null {
  const dir = cg.paths.dirs.find((d) => existsSync(join(d, file)));
  return dir === undefined ? null : readFileSync(join(dir, file), 'utf8').trim();
}

function isInvalidArgument(pattern: RegExp): (err: unknown) => boolean {
  return (err) =>
    err instanceof JigletError && err.code === 'JIGLET_E_INVALID_ARGUMENT' && pattern.test(err.message);
}

/** A containment plus every job cgroup a test made in it, all removed in after(). */
class Fixture {
  containment!: Containment;
  readonly jobs: JobCgroup[] = [];
  readonly logged: string[] = [];

  constructor(
    readonly namespace: string,
    readonly root?: string,
  ) {}

  async detect(): Promise<Containment> {
    return detectContainment({
      namespace: this.namespace,
      log: (m) => this.logged.push(m),
      ...(this.root ? { root: this.root } : {}),
    });
  }

  async create(limits: JobLimits = NO_LIMITS): Promise<JobCgroup> {
    const cg = await this.containment.create(`job-${process.pid}-${++jobSeq}`, limits);
    this.jobs.push(cg);
    return cg;
  }

  async cleanup(): Promise<void> {
    for (const cg of this.jobs) {
      await cg.killAll();
      await cg.remove();
    }
    if (this.containment) assert.equal(await this.containment.removeNamespace(), true);
  }
}

describe('containment', () => {
  describe('limit values', () => {
    it('writes cpu.max as "quota period" and forbids swap when memory is limited (v2)', () => {
      assert.deepEqual(v2LimitWrites({ memoryBytes: 64 * MiB, cpuMillis: 500, pidsMax: 32 }), [
        { file: 'memory.max', value: String(64 * MiB) },
        { file: 'memory.swap.max', value: '0', optional: true },
        { file: 'cpu.max', value: '50000 100000' },
        { file: 'pids.max', value: '32' },
      ]);
      assert.deepEqual(
        v2LimitWrites(NO_LIMITS).map((w) => w.value),
        ['max', 'max', 'max 100000', 'max'],
      );
    });
  });

  describe("'none' mode (fake cgroup root)", () => {
    const fakeRoot = mkdtempSync(join(tmpdir(), 'jiglet-nocg-'));
    const f = new Fixture('jiglet-test-none', fakeRoot);
    before(async () => {
      f.containment = await f.detect();
    });
    after(async () => {
      await f.cleanup();
      rmSync(fakeRoot, { recursive: true });
    });

    it('is chosen when no hierarchy is usable, with a warning naming what is lost', () => {
      assert.equal(f.containment.mode, 'none');
      assert.equal(f.logged.length, 1);
      assert.match(f.logged[0]!, /without memory, CPU and pids limits/);
      assert.match(f.logged[0]!, /cannot kill processes that left its process group/);
    });

    it('hands out cgroups that contain nothing and do nothing', async () => {
      const cg = await f.create({ memoryBytes: 64 * MiB, cpuMillis: 500, pidsMax: 10 });
      assert.deepEqual(cg.procsFiles, []);
      assert.deepEqual(cg.paths, { mode: 'none', dirs: [] });
      assert.deepEqual(await cg.pids(), []);
      assert.equal(await cg.isEmpty(), true);
      assert.equal(await cg.waitEmpty(1000), true);
      await cg.killAll();
      assert.equal(await cg.oomKilled(), false);
      await cg.remove();
    });

    it('rejects limits a person got wrong, saying which and why', async () => {
      const bad: [Partial<JobLimits>, RegExp][] = [
        [{ memoryBytes: -1 }, /limits\.memoryBytes is -1; it must be a whole number of bytes, or 0/],
        [{ memoryBytes: Number.NaN }, /limits\.memoryBytes is NaN/],
        [{ memoryBytes: 512 * 1024 }, /524288 bytes, too small to run anything; give at least 1 MiB/],
        [{ cpuMillis: 2.5 }, /limits\.cpuMillis is 2\.5/],
        [{ cpuMillis: 5 }, /smallest CPU quota is 10/],
        [{ pidsMax: -3 }, /limits\.pidsMax is -3/],
        [{ pidsMax: 10_000_000 }, /at most 4194304/],
      ];
      for (const [limits, message] of bad) {
        await assert.rejects(
          f.containment.create('job-bad', { ...NO_LIMITS, ...limits }),
          isInvalidArgument(message),
        );
      }
      await assert.rejects(
        f.containment.create('../escape', NO_LIMITS),
        isInvalidArgument(/cannot name a cgroup/),
      );
    });
  });

  describe('real cgroups', () => {
    const f = new Fixture(`jiglet-test-${process.pid}`);
    before(async () => {
      f.containment = await f.detect();
    });
    after(() => f.cleanup());

    it('uses cgroups on this host, the unified mount as tracker on hybrid v1 hosts', () => {
      assert.match(f.containment.mode, /^cgroup-v[12]$/);
      assert.deepEqual(f.logged, []);
    });

    it('applies the memory, cpu and pids limits and removes every dir', async () => {
      const cg = await f.create({ memoryBytes: 64 * MiB, cpuMillis: 500, pidsMax: 16 });
      if (cg.paths.mode === 'cgroup-v1') {
        assert.equal(limitFile(cg, 'memory.limit_in_bytes'), String(64 * MiB));
        const memsw = limitFile(cg, 'memory.memsw.limit_in_bytes');
        if (memsw !== null) assert.equal(memsw, String(64 * MiB));
        assert.equal(limitFile(cg, 'cpu.cfs_period_us'), '100000');
        assert.equal(limitFile(cg, 'cpu.cfs_quota_us'), '50000');
        if (existsSync(join(CGROUP_ROOT, 'unified'))) assert.equal(cg.paths.tracker?.kind, 'unified');
      } else {
        assert.equal(limitFile(cg, 'memory.max'), String(64 * MiB));
        assert.equal(limitFile(cg, 'cpu.max'), '50000 100000');
      }
      assert.equal(limitFile(cg, 'pids.max'), '16');
      assert.ok(cg.procsFiles.length > 0 && cg.procsFiles.every((p) => existsSync(p)));
      await cg.remove();
      assert.ok(cg.paths.dirs.every((d) => !existsSync(d)));
      await cg.remove(); // idempotent
    });

    it('OOM-kills a job that allocates past its memory limit, and reports it', async () => {
      const cg = await f.create({ ...NO_LIMITS, memoryBytes: 64 * MiB });
      // tail keeps the last "line" in memory, and zeros hold no newline: 300 MiB against 64 MiB.
      const r = run(cg, 'head -c 300M /dev/zero | tail >/dev/null');
      const [code, signal] = await r.exit;
      assert.ok(code !== 0 || signal !== null, 'the job should fail');
      assert.equal(await cg.oomKilled(), true);

      const calm = await f.create({ ...NO_LIMITS, memoryBytes: 64 * MiB });
      assert.deepEqual(await run(calm, 'head -c 1M /dev/zero | tail >/dev/null').exit, [0, null]);
      assert.equal(await calm.oomKilled(), false);
    });

    it('refuses forks beyond pidsMax', async () => {
      const cg = await f.create({ ...NO_LIMITS, pidsMax: 4 });
      const r = run(
        cg,
        'for i in 1 2 3 4 5 6 7 8; do sleep 1000 </dev/null >/dev/null 2>&1 & done; echo all started',
      );
      await r.exit;
      assert.match(r.err(), /fork|Resource temporarily unavailable/i);
      assert.doesNotMatch(r.out(), /all started/);
      const left = await cg.pids();
      assert.ok(left.length > 0 && left.length <= 4, `pids in the cgroup: ${left}`);
      await cg.killAll();
      assert.equal(await cg.isEmpty(), true);
    });
  });

  /** The same real v1 hierarchies reached through a root of symlinks, so `unified` can be left out. */
  const symlinkRoot = (controllers: string[]) => (): string | null => {
    if (!controllers.every((c) => existsSync(join(CGROUP_ROOT, c, 'cgroup.procs')))) return null;
    const root = mkdtempSync(join(tmpdir(), 'jiglet-v1root-'));
    for (const c of controllers) symlinkSync(join(CGROUP_ROOT, c), join(root, c));
    return root;
  };
  const trackers: { name: string; tag: string; root?: () => string | null; tracker?: string }[] = [
    { name: 'kill and empty-tracking on the real root', tag: 'real' },
    {
      name: 'kill and empty-tracking through the v1 freezer',
      tag: 'freezer',
      root: symlinkRoot(['memory', 'cpu', 'pids', 'freezer']),
      tracker: 'freezer',
    },
    {
      name: 'kill and empty-tracking by repeated kills (no freezer, no unified mount)',
      tag: 'bare',
      root: symlinkRoot(['memory', 'cpu', 'pids']),
    },
  ];
  for (const variant of trackers) {
    describe(variant.name, () => {
      const root = variant.root?.();
      const f = new Fixture(`jiglet-test-${process.pid}-${variant.tag}`, root ?? undefined);
      before(async function () {
        // Only on hosts without cgroup v1 controllers (pure v2), where v1 trackers cannot exist.
        if (root === null) this.skip();
        f.containment = await f.detect();
        if (root) assert.equal((await f.create()).paths.tracker?.kind, variant.tracker);
      });
      after(async () => {
        await f.cleanup();
        if (root) rmSync(root, { recursive: true });
      });

      it('kills a grandchild that left the job session with setsid', async () => {
        const cg = await f.create();
        const r = run(cg, `${ESCAPE} echo leader $$`);
        const escaped = Number((await r.waitOut(/escaped (\d+)/)).split(' ')[1]);
        const leader = Number((await r.waitOut(/leader (\d+)/)).split(' ')[1]);
        await r.exit;
        assert.deepEqual(await cg.pids(), [escaped], 'the escaped grandchild outlives the leader, alone');
        assert.equal(sessionOf(escaped), escaped, 'the grandchild leads its own session');
        assert.notEqual(sessionOf(escaped), leader);
        await cg.killAll();
        assert.equal(await cg.isEmpty(), true);
        assert.equal(sessionOf(escaped), null, 'the escaped grandchild survived killAll');
      });

      it('kills a loop that keeps forking orphans', async () => {
        const cg = await f.create({ ...NO_LIMITS, pidsMax: 300 });
        // bash retries a refused fork instead of exiting, so the loop is still running at kill time.
        const script =
          'i=0; while :; do (setsid sleep 1000 </dev/null >/dev/null 2>&1 &); i=$((i+1)); [ $i = 20 ] && echo twenty; done';
        const r = run(cg, script, '/bin/bash');
        await r.waitOut(/twenty/);
        assert.ok((await cg.pids()).length >= 20);
        await cg.killAll();
        assert.equal(await cg.isEmpty(), true);
        assert.deepEqual(await cg.pids(), []);
        assert.deepEqual(await r.exit, [null, 'SIGKILL']);
      });

      it('waitEmpty resolves true when the job exits, leaking no watcher or timer', async () => {
        const cg = await f.create();
        const r = run(cg, 'echo in; read line');
        await r.waitOut(/in/);
        let result: boolean | undefined;
        const leftovers = await ownResourcesLeftBy(
          async () => {
            result = await cg.waitEmpty(20_000);
          },
          (types) => {
            if (cg.paths.mode === 'cgroup-v2' || cg.paths.tracker?.kind === 'unified') {
              assert.ok(types.includes('FSEVENTWRAP'), `waits on inotify, not a re-check (${types})`);
            }
            r.child.stdin!.end('\n');
          },
        );
        assert.equal(result, true);
        await r.exit;
        assert.deepEqual(leftovers, []);
      });

      it('waitEmpty resolves false at the deadline, leaking no watcher or timer', async () => {
        const cg = await f.create();
        const r = run(cg, 'echo in; exec sleep 1000');
        await r.waitOut(/in/);
        const leftovers = await ownResourcesLeftBy(async () => {
          assert.equal(await cg.waitEmpty(150), false);
        });
        assert.deepEqual(leftovers, []);
        await cg.killAll();
        assert.deepEqual(await r.exit, [null, 'SIGKILL']);
      });

      it('adopts recorded paths after a restart and kills the leftovers', async () => {
        const cg = await f.create();
        const r = run(cg, ESCAPE);
        await r.waitOut(/escaped/);
        await r.exit;
        const recorded = JSON.parse(JSON.stringify(cg.paths)) as CgroupPaths;
        const restarted = await f.detect();
        const adopted = restarted.adopt(recorded);
        const [leftover] = await adopted.pids();
        assert.ok(leftover !== undefined && sessionOf(leftover) !== null);
        await adopted.killAll();
        assert.equal(sessionOf(leftover), null);
        await adopted.remove();
        assert.ok(recorded.dirs.every((d) => !existsSync(d)));

        // A second restart finds the dirs gone: everything is a harmless no-op.
        const gone = restarted.adopt(recorded);
        assert.deepEqual(await gone.pids(), []);
        assert.equal(await gone.isEmpty(), true);
        assert.equal(await gone.waitEmpty(0), true);
        await gone.killAll();
        assert.equal(await gone.oomKilled(), false);
        await gone.remove();
      });

      it('refuses to adopt recorded paths that are not job cgroups of this agent', () => {
        const rootDir = f.root ?? CGROUP_ROOT;
        const refuse = (paths: CgroupPaths, re: RegExp): void => {
          assert.throws(() => f.containment.adopt(paths), isInvalidArgument(re));
        };
        refuse({ mode: 'cgroup-v1', dirs: [join(rootDir, 'memory')] }, /refusing to kill or remove/);
        refuse(
          { mode: 'cgroup-v1', dirs: [join(rootDir, 'memory', 'other-agent', 'job')] },
          /not a job cgroup/,
        );
        refuse({ mode: 'cgroup-v2', dirs: ['/tmp/x', '/tmp/y'] }, /malformed/);
        refuse({ mode: 'cgroup-v1', dirs: [] }, /malformed/);
        const dir = join(rootDir, 'memory', f.namespace, 'job-1');
        refuse(
          { mode: 'cgroup-v1', dirs: [dir], tracker: { kind: 'unified', dir: join(rootDir, 'unified') } },
          /tracker/,
        );
      });
    });
  }
});
