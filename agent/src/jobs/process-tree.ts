/**
 * Signals to a job's whole process tree: its process group, and every process of its cgroup
 * (a process that called setsid left the group but not the cgroup). Also the waits a job's end
 * needs, each bounded by a deadline.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Runtime } from './job-entry.js';

/** Sends `sig` to the job's process group and to every process of its cgroup. */
export function signalTree(rt: Runtime, sig: NodeJS.Signals, log: Logger): void {
  const pid = rt.child.pid;
  if (pid !== undefined) killQuietly(-pid, sig);
  // Processes that left the group with setsid still sit in the cgroup.
  rt.cgroup
    ?.pids()
    .then((pids) => {
      for (const p of pids) killQuietly(p, sig);
    })
    .catch((err) => log.warn({ err }, 'could not list the job cgroup'));
}

/** Kills the whole tree: the cgroup when there is one, else SIGKILL to the process group. */
export async function killTree(rt: Runtime, log: Logger): Promise<void> {
  if (rt.cgroup) await rt.cgroup.killAll();
  else signalTree(rt, 'SIGKILL', log);
}

/** Pids of the job's processes now (its cgroup; its process group without containment). */
export async function treePids(rt: Runtime, contained: boolean): Promise<number[]> {
  if (rt.cgroup && contained) return rt.cgroup.pids();
  const leader = rt.child.pid;
  return leader === undefined ? [] : processGroup(leader);
}

/**
 * Without containment a job is its process group (it was spawned detached, so its leader's pid is
 * the group id): the processes whose /proc/PID/stat names that group. One that left the group
 * (setsid) is not found, which only ever refuses it.
 */
async function processGroup(leader: number): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'latin1');
      // Fields after the parenthesised command name: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === leader) pids.push(Number(name));
    } catch {
      // The process ended while we looked: not one of the job's any more.
    }
  }
  return pids;
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    // ESRCH: already gone, which is what we want.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** True if `p` settled before `ms`; the timer is always cleared. */
export async function withDeadline(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), expired]);
  } finally {
    clearTimeout(timer);
  }
}
