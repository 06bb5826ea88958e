/**
 * One agent per state directory: two agents sharing job records would each think the other's
 * jobs are lost and kill them. The lock is an flock(2) on `<state>/agent.lock`, held for the
 * agent's lifetime. The kernel takes it atomically (of two agents started at the same instant,
 * exactly one gets it) and drops it when the agent dies however it dies (SIGKILL, OOM, power
 * cut), so a stale lock or a pid reused by another process never blocks a start.
 *
 * Node has no flock. The addon that has one (fs-ext) is compiled by its install script: it
 * builds here, but needs a compiler and Node's headers on every jig host and a rebuild per Node
 * ABI. So `flock(1)` from util-linux (Essential on Debian; busybox has it too) takes the lock for
 * us: it is handed our open file as its fd 3, locks it and exits.
 * An flock belongs to the open file, not to the process that took it, and our descriptor of that
 * file stays open, so the lock is held until the agent closes it or exits. Node opens files
 * close-on-exec, so jobs never inherit it and cannot keep a dead agent's lock alive.
 *
 * The file holds the holder's pid, for the message a second agent prints; it is never deleted
 * (deleting a lock file lets two agents lock two different files of the same name).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';

/** The lock file in the state directory. */
export const LOCK_FILE = 'agent.lock';
/** The exit status we ask flock(1) to give when the lock is held (sysexits EX_TEMPFAIL). */
const HELD = 75;

/** Takes the lock, or throws saying who holds it; returns the function that releases it. */
export function lockStateDir(stateDir: string): () => void {
  const path = join(stateDir, LOCK_FILE);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    const result = spawnSync(
      'flock',
      ['--exclusive', '--nonblock', '--conflict-exit-code', String(HELD), '3'],
      {
        stdio: ['ignore', 'ignore', 'pipe', fd],
      },
    );
    if (result.error) {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `cannot lock the state directory: running flock(1) failed (${(result.error as NodeJS.ErrnoException).code}); install util-linux`,
      );
    }
    if (result.status === HELD) throw heldBy(stateDir, path);
    if (result.status !== 0) {
      throw new JigletError(
        'JIGLET_E_INTERNAL',
        `cannot lock ${path}: flock(1) exited ${result.status ?? result.signal}: ${result.stderr.toString().trim()}`,
      );
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    // Emptied while still held: a pid left behind would name a process that no longer holds it.
    ftruncateSync(fd, 0);
    closeSync(fd);
  };
}

/** The error for a lock held by another agent, naming its pid when it has written it yet. */
function heldBy(stateDir: string, path: string): JigletError {
  let pid: number | undefined;
  try {
    const text = readFileSync(path, 'utf8').trim();
    if (/^\d+$/.test(text)) pid = Number(text);
  } catch {
    // Unreadable: the message goes without a pid.
  }
  const who = pid === undefined ? 'another jiglet (still starting)' : `another jiglet, pid ${pid}`;
  const stop = pid === undefined ? 'stop it' : `stop it (kill ${pid})`;
  return failedPrecondition(
    `state directory ${stateDir} is in use by ${who}, which holds the lock on ${path}; ${stop} first, or give this agent a state directory of its own (--state-dir)`,
  );
}
