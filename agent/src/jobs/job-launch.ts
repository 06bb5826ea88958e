/**
 * Starts a job's process: its environment, the uid it runs as, its working and results folders,
 * its cgroup, and the shim that joins the cgroup before the job's first instruction.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, mkdirSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';
import { resolveExecutable } from './command-path.js';
import type { Containment, JobCgroup } from './containment.js';
import type { Runtime } from './job-entry.js';
import type { JobRecord } from './job-records.js';
import type { JobCredentials, JobUsers } from './job-users.js';

/**
 * Joins the cgroups, then execs the job. Runs before the job's first instruction, so every
 * descendant (even one that calls setsid) is contained. Exit 125 = could not join a cgroup.
 */
const SHIM = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
/**
 * The same, for a user's job: it joins its cgroups while still root (the cgroup files are the
 * agent's), then gives up root for the job's own uid through setpriv, which execs in place. A user's
 * job gets the usual umask back; the agent's own 077 is for its state files.
 */
const USER_SHIM =
  'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; umask 022; exec "$@"';
/** The folder in a user's job's working directory that $JIGLET_RESULTS names. */
const RESULTS_DIR = 'results';
/** Where users' jobs get their working directories, under the state directory (see README). */
export const WORK_DIR = 'work';

/** How the supervisor launches jobs (part of its settings). */
export interface LaunchSettings {
  containment: Containment;
  /** Variables every job gets (PATH, LANG); a job's own env is added on top. */
  baseEnv: Record<string, string>;
  /** Which uid a user's job runs as; without it every job runs as the agent. */
  users?: JobUsers;
  /** Folder of users' working directories (one per job, owned by the job's uid). */
  workRoot?: string;
  /**
   * Awaited before a user's job on a DUT is spawned: device grants of a lease claimed a moment
   * ago must be on the nodes before the job opens them.
   */
  beforeUserJob?: (dut: string) => Promise<void>;
}

/** A started process, or why the job could not start (the job then fails with that reason). */
export type Launched =
  | { ok: true; child: ChildProcess; cgroup: JobCgroup | null; results: Runtime['results'] }
  | { ok: false; reason: string };

/**
 * Spawns the job of `record` (in folder `dir`) and resolves once the process runs. Sets
 * `record.runAs` and `record.cgroup` as they are decided. Throws only where spawn() itself does
 * (ENOTDIR, E2BIG) or the DUT's device grants cannot be awaited.
 */
export async function launchJob(
  settings: LaunchSettings,
  record: JobRecord,
  dir: string,
  privileged: boolean,
  /** The sockets stdout and stderr go to (the output pump's); pipes to this thread without. */
  outputTo?: readonly [Socket, Socket],
): Promise<Launched> {
  const { containment, baseEnv } = settings;
  const { id, spec } = record;
  const env: Record<string, string> = {
    ...baseEnv,
    ...spec.env,
    JIGLET_JOB_ID: id,
    ...(spec.dut ? { JIGLET_DUT: spec.dut } : {}),
  };
  let creds: JobCredentials | undefined;
  let work: string;
  let dropTo: string[] = [];
  let results: Runtime['results'];
  try {
    creds = privileged ? undefined : settings.users?.credentialsOf(record.owner);
    if (creds) dropTo = setprivArgs(creds, baseEnv.PATH ?? '');
    work = creds ? userWorkDir(settings.workRoot, id, creds) : join(dir, 'work');
    if (!creds) mkdirSync(work);
    if (!privileged) {
      // Every user's job may report test cases (JUnit XML) here; read when it ends.
      const resultsDir = join(work, RESULTS_DIR);
      mkdirSync(resultsDir, { mode: 0o700 });
      if (creds) chownSync(resultsDir, creds.uid, creds.gid);
      env.JIGLET_RESULTS = resultsDir;
      results = { dir: resultsDir, uid: creds?.uid };
    }
  } catch (err) {
    return {
      ok: false,
      reason: `could not prepare the job's user and working directory: ${(err as Error).message}`,
    };
  }
  if (creds) {
    if (spec.dut !== '') await settings.beforeUserJob?.(spec.dut);
    record.runAs = creds;
    // The agent's HOME is not the job's: tools that write to ~ get the job's own folder.
    env.HOME = work;
  }
  const cwd = spec.cwd === '' ? work : spec.cwd;
  const executable = resolveExecutable(spec.command, env.PATH ?? '', cwd);
  if (!executable.ok) return { ok: false, reason: executable.reason };
  let cgroup: JobCgroup | null = null;
  try {
    cgroup = containment.mode === 'none' ? null : await containment.create(id, spec.limits);
    if (cgroup) record.cgroup = cgroup.paths;
  } catch (err) {
    return { ok: false, reason: `could not create the job's cgroup: ${(err as Error).message}` };
  }
  const child = spawn(
    '/bin/sh',
    [
      '-c',
      creds ? USER_SHIM : SHIM,
      'jiglet-shim',
      ...(cgroup?.procsFiles ?? []),
      '--',
      ...dropTo,
      executable.path,
      ...spec.args,
    ],
    {
      cwd,
      env,
      detached: true,
      stdio: [spec.stdin ? 'pipe' : 'ignore', outputTo?.[0] ?? 'pipe', outputTo?.[1] ?? 'pipe'],
    },
  );
  const spawned = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', resolve);
  });
  if (spawned) {
    await cgroup?.remove();
    return { ok: false, reason: `could not start ${spec.command}: ${spawned.message}` };
  }
  return { ok: true, child, cgroup, results };
}

/** Creates a user's job folder, owned by the job's uid and closed to everyone else. */
function userWorkDir(root: string | undefined, id: string, creds: JobCredentials): string {
  if (!root) throw new Error('the agent has no folder for job working directories');
  const work = join(root, id);
  mkdirSync(work, { mode: 0o700 });
  chownSync(work, creds.uid, creds.gid);
  return work;
}

/**
 * setpriv drops every group, and no-new-privs keeps a setuid binary (su, sudo) from taking
 * root back. It execs in place, so the job's pid stays the one the agent supervises.
 */
function setprivArgs(creds: JobCredentials, path: string): string[] {
  const setpriv = resolveExecutable('setpriv', path, '/');
  if (!setpriv.ok)
    throw new JigletError('JIGLET_E_INTERNAL', 'setpriv (util-linux) is not installed on the jig host');
  return [
    setpriv.path,
    `--reuid=${creds.uid}`,
    `--regid=${creds.gid}`,
    '--clear-groups',
    '--no-new-privs',
    '--',
  ];
}

/**
 * The client's working directory must exist and be a directory on this host; otherwise the spawn
 * would fail with an error that names /bin/sh (ENOENT) or is thrown outright (ENOTDIR).
 */
export function checkWorkingDir(cwd: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(cwd).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw failedPrecondition(`working directory ${cwd} does not exist on the jig host`);
    throw failedPrecondition(`working directory ${cwd} cannot be used on the jig host (${code})`);
  }
  if (!isDir) throw failedPrecondition(`working directory ${cwd} is not a directory on the jig host`);
}

/** A full disk becomes RESOURCE_EXHAUSTED with a readable message; anything else is passed on. */
export function noSpaceAsExhausted(err: unknown, root: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new JigletError('JIGLET_E_RESOURCE_EXHAUSTED', `no space left for a new job in ${root}`);
  }
  return err;
}
