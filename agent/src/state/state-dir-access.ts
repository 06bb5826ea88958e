/**
 * Who may reach what in the state directory. Users' jobs run as other uids (job-users.ts), so the
 * agent's records, logs, leases and driver configs must be closed to them, while each job still
 * reaches its own working folder under `work/`. Hence: the root is 0711 (pass through, no listing),
 * everything in it is the agent's alone, and `work/<job>` belongs to the job's uid. The two
 * exceptions are what jobs call the agent with: `bin/jigctl` (0755, in a 0711 folder) and the
 * local endpoint's socket `jiglet.sock` (0666; who may do what there is decided per connection,
 * local-endpoint.ts).
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { WORK_DIR } from '../jobs/supervisor.js';
import { JOB_BIN_DIR } from '../local/jigctl-shim.js';
import { LOCAL_SOCKET } from '../local/local-endpoint.js';

/** What jobs reach besides their work folder: the jigctl shim and the local endpoint's socket (own modes). */
const FOR_JOBS = new Set([WORK_DIR, JOB_BIN_DIR, LOCAL_SOCKET]);
/** The root: others may pass through to their job's folder, never list or read. */
const ROOT_MODE = 0o711;
/** The agent's files get no group or other bits at all. */
const PRIVATE_BITS = 0o700;

/**
 * Creates the state directory with the modes above and takes group/other bits off whatever an
 * earlier agent (or a looser umask) left in it. Files written later are kept private by the umask
 * of 077 that `jiglet serve` sets for its whole process (main.ts): every writer, without each one
 * having to say so. (In-process test agents leave their test runner's umask alone.)
 */
export function prepareStateDir(stateDir: string, log: Logger): { workRoot: string } {
  mkdirSync(stateDir, { recursive: true, mode: PRIVATE_BITS });
  chmodSync(stateDir, ROOT_MODE);
  const workRoot = join(stateDir, WORK_DIR);
  for (const name of readdirSync(stateDir)) {
    if (FOR_JOBS.has(name)) continue;
    const path = join(stateDir, name);
    const stat = lstatSync(path);
    if (stat.isSymbolicLink() || (stat.mode & 0o077) === 0) continue;
    chmodSync(path, stat.mode & PRIVATE_BITS);
    log.info({ path }, 'made a state file private to the agent');
  }
  mkdirSync(workRoot, { recursive: true });
  chmodSync(workRoot, ROOT_MODE);
  const closed = closedAncestor(stateDir);
  if (closed)
    log.warn(
      { folder: closed },
      `users' jobs cannot pass through ${closed} to their work folders under ${workRoot}: ` +
        `give it o+x (chmod o+x ${closed}) or move the state directory`,
    );
  return { workRoot };
}

/** The first folder above `dir` that other users may not pass through, if any. */
function closedAncestor(dir: string): string | undefined {
  for (let at = dirname(dir); ; at = dirname(at)) {
    if ((statSync(at).mode & 0o001) === 0) return at;
    if (at === dirname(at)) return undefined;
  }
}
