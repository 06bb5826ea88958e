/**
 * Operations on one job's cgroup dirs, v1 or v2. The first dir is the tracking dir: a v2 dir
 * (cgroup.kill, cgroup.events) when there is one, else the v1 freezer (or memory) dir.
 */
import { watch } from 'node:fs';
import { readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { CgroupPaths, JobCgroup } from './containment.js';

/** Re-check interval where the kernel gives no event (v1 emptiness, freezer state). */
const RECHECK_MS = 10;
/** How long to wait for the kernel to reap killed processes before reporting failure. */
const KILL_SETTLE_MS = 5000;
/** rmdir can fail with EBUSY while the kernel finishes tearing down the last task. */
const RMDIR_ATTEMPTS = 50;

/** A job's cgroup(s) on a real cgroup filesystem. */
export class CgroupJob implements JobCgroup {
  readonly procsFiles: string[];
  readonly #track: string;
  readonly #hasKill: boolean;

  constructor(readonly paths: CgroupPaths) {
    this.procsFiles = paths.dirs.map((d) => join(d, 'cgroup.procs'));
    this.#track = paths.dirs[0] ?? '';
    this.#hasKill = paths.mode === 'cgroup-v2' || !/\/(freezer|memory|cpu|pids)\//.test(this.#track);
  }

  async pids(): Promise<number[]> {
    const text = await readOrEmpty(join(this.#track, 'cgroup.procs'));
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  }

  async isEmpty(): Promise<boolean> {
    return (await this.pids()).length === 0;
  }

  async waitEmpty(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (await this.isEmpty()) return true;
    if (!this.#hasKill) {
      while (Date.now() < deadline) {
        await delay(RECHECK_MS);
        if (await this.isEmpty()) return true;
      }
      return false;
    }
    // v2: the kernel signals a change of cgroup.events ("populated 0") through inotify.
    const controller = new AbortController();
    try {
      const changes = watch(join(this.#track, 'cgroup.events'), { signal: controller.signal });
      const ended = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
        const check = (): void => {
          this.isEmpty().then(
            (empty) => {
              if (empty) {
                clearTimeout(timer);
                resolve(true);
              }
            },
            () => undefined,
          );
        };
        changes.on('change', check);
        changes.on('error', () => {
          clearTimeout(timer);
          resolve(true); // the dir is gone, so the cgroup is empty
        });
        controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
        check(); // a change between the first check and the watch
      });
      return await ended;
    } finally {
      controller.abort();
    }
  }

  async killAll(): Promise<void> {
    if (this.#hasKill) {
      await writeFile(join(this.#track, 'cgroup.kill'), '1').catch(ignoreGone);
    } else if (this.#track.includes('/freezer/')) {
      // Freeze first so a fork loop cannot outrun the kill, then kill, then thaw to let them die.
      await writeFile(join(this.#track, 'freezer.state'), 'FROZEN').catch(ignoreGone);
      for (const pid of await this.pids()) killQuietly(pid);
      await writeFile(join(this.#track, 'freezer.state'), 'THAWED').catch(ignoreGone);
    } else {
      for (let round = 0; round < 100 && !(await this.isEmpty()); round++) {
        for (const pid of await this.pids()) killQuietly(pid);
      }
    }
    if (!(await this.waitEmpty(KILL_SETTLE_MS))) {
      throw new Error(`processes still in ${this.#track} ${KILL_SETTLE_MS} ms after SIGKILL`);
    }
  }

  async oomKilled(): Promise<boolean> {
    for (const dir of this.paths.dirs) {
      const file = this.paths.mode === 'cgroup-v2' ? 'memory.events' : 'memory.oom_control';
      if (this.paths.mode === 'cgroup-v1' && !dir.includes('/memory/')) continue;
      const m = /^oom_kill (\d+)$/m.exec(await readOrEmpty(join(dir, file)));
      if (m && Number(m[1]) > 0) return true;
    }
    return false;
  }

  async remove(): Promise<void> {
    for (const dir of this.paths.dirs) {
      for (let attempt = 1; ; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= RMDIR_ATTEMPTS) {
            throw new Error(`cannot remove cgroup ${dir}: ${code}`, { cause: err });
          }
          await delay(RECHECK_MS);
        }
      }
    }
  }
}

async function readOrEmpty(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    ignoreGone(err);
    return '';
  }
}

/** A cgroup that disappeared is an empty one; anything else is a real failure. */
function ignoreGone(err: unknown): void {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'ENOENT' && code !== 'ENODEV') throw err;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
