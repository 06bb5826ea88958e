/**
 * One agent per state directory: two agents sharing job records would each think the other's
 * jobs are lost and kill them. The lock file holds the owner's pid; a lock whose pid is dead
 * (an agent killed with -9) is taken over.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { failedPrecondition } from '../../protocol/src/errors.js';

/** Takes the lock; returns the function that releases it. */
export function lockStateDir(stateDir: string): () => void {
  const path = join(stateDir, 'agent.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw failedPrecondition(`state directory ${stateDir} is in use by another jiglet (pid ${pid})`);
      }
      unlinkSync(path);
    }
  }
  throw failedPrecondition(`could not lock state directory ${stateDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
