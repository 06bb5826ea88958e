/**
 * Says why processes outlive SIGKILL. A process in uninterruptible sleep (state D: a hung USB
 * device, a dead NFS server, a frozen cgroup) only dies once its I/O returns, which may be never;
 * the agent reports it, with what the kernel says it waits in, instead of waiting forever.
 */
import { readFile } from 'node:fs/promises';

/** What /proc says about one process that would not die. */
export interface StuckProcess {
  pid: number;
  /** The command name from /proc/PID/stat. */
  comm: string;
  /** The state letter: D = uninterruptible sleep, Z = zombie, ... */
  state: string;
  /** The kernel function it sleeps in ('' when unknown or not sleeping). */
  wchan: string;
}

const STATE_NAMES: Record<string, string> = {
  D: 'uninterruptible sleep',
  Z: 'zombie',
  T: 'stopped',
  t: 'traced',
  R: 'running',
  S: 'sleeping',
};

/** Reads /proc for each pid; a pid that is gone meanwhile is left out. */
export async function inspectProcesses(pids: readonly number[]): Promise<StuckProcess[]> {
  const found: StuckProcess[] = [];
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // comm is in parentheses and may itself hold spaces or parentheses: split at the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const state = stat.slice(close + 2, close + 3);
      const wchan = await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '');
      found.push({ pid, comm, state, wchan: wchan === '0' ? '' : wchan.trim() });
    } catch {
      // Gone between the listing and the read: not stuck after all.
    }
  }
  return found;
}

/** "pid 42 (sleep) in state D (uninterruptible sleep, in do_freezer_trap)", joined by "; ". */
export function describeProcesses(procs: readonly StuckProcess[]): string {
  return procs
    .map((p) => {
      const name = STATE_NAMES[p.state];
      const detail = [name, p.wchan ? `in ${p.wchan}` : ''].filter(Boolean).join(', ');
      return `pid ${p.pid} (${p.comm}) in state ${p.state}${detail ? ` (${detail})` : ''}`;
    })
    .join('; ');
}
