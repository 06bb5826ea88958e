/**
 * Which job a unix-socket connection comes from. Node has no SO_PEERCRED, so the kernel is asked
 * another way: the accepted socket's inode (/proc/self/fd), its peer's inode (`ss`, which asks the
 * kernel over netlink sock_diag), then which job's processes hold that peer inode among their file
 * descriptors (/proc/PID/fd). Only the processes of running jobs with a local grant are searched.
 */
import { execFile } from 'node:child_process';
import { readdir, readlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { JigletError } from '../../../protocol/src/errors.js';
import type { LocalJob } from '../jobs/supervisor.js';

const run = promisify(execFile);

/** How long `ss` may take; it answers in milliseconds even with thousands of sockets. */
const SS_TIMEOUT_MS = 5000;
/** "u_str ESTAB 0 0 /path/jiglet.sock 1452085 * 1452084": local inode, then the peer's, last. */
const SS_LINE = /\s(\d+)\s+\S+\s+(\d+)\s*$/;

/** The inode of an accepted unix socket, from the agent's own fd table. */
export async function socketInode(socket: Socket): Promise<number> {
  // Node keeps the descriptor on its libuv handle; there is no public accessor for it.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw internal('the accepted socket has no file descriptor');
  return inodeOf(await readlink(`/proc/self/fd/${fd}`));
}

/** The inode of the other end of our unix socket `inode`, or undefined once it is gone. */
export async function peerInode(inode: number): Promise<number | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await run('ss', ['-xnH'], { timeout: SS_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }));
  } catch (err) {
    throw internal(
      `cannot list unix sockets with ss (iproute2): ${(err as Error).message}; install iproute2 on the jig host`,
    );
  }
  for (const line of stdout.split('\n')) {
    const m = SS_LINE.exec(line);
    if (m && Number(m[1]) === inode) return Number(m[2]);
  }
  return undefined;
}

/** The jobs one of whose processes holds socket `inode` open. */
export async function jobsHolding(inode: number, jobs: readonly LocalJob[]): Promise<LocalJob[]> {
  const wanted = `socket:[${inode}]`;
  const found: LocalJob[] = [];
  for (const job of jobs) {
    for (const pid of await job.pids()) {
      if (await holds(pid, wanted)) {
        found.push(job);
        break;
      }
    }
  }
  return found;
}

async function holds(pid: number, wanted: string): Promise<boolean> {
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false; // the process ended meanwhile
  }
  for (const fd of fds) {
    try {
      if ((await readlink(`/proc/${pid}/fd/${fd}`)) === wanted) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

function inodeOf(link: string): number {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  if (!m) throw internal(`the accepted connection is not a socket (${link})`);
  return Number(m[1]);
}

function internal(message: string): JigletError {
  return new JigletError('JIGLET_E_INTERNAL', message);
}
