/**
 * Which Unix user a user's job runs as. Each owner identity (certificate CN) gets a uid and a gid
 * of its own from a configured range, allocated once and kept in the state directory: systemd's
 * DynamicUser idea, without passwd entries. Agent-owned hardware jobs never come here; they keep
 * the agent's privileges because their drivers need them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';

/** Where the allocation is kept, relative to the state directory. */
const USERS_FILE = 'job-users.json';
/** systemd's range for dynamic users: free on a stock Debian, clear of login users and nobody. */
export const DEFAULT_JOB_UID_RANGE = { first: 61184, last: 65519 } as const;

/** A Unix identity a job runs as. */
export interface JobCredentials {
  uid: number;
  gid: number;
}

/** How users' jobs are run, from the agent config. */
export type JobUserPolicy =
  /** A uid and gid per owner from [first, last] (the default when the agent runs as root). */
  | { mode: 'per-owner'; first: number; last: number }
  /** Every user's job as one fixed user: owners are not separated from each other. */
  | { mode: 'single'; uid: number; gid: number }
  /** As the agent itself: no separation at all (the only choice for an agent that is not root). */
  | { mode: 'agent' };

interface UsersFile {
  version: 1;
  owners: Record<string, number>;
}

/** Allocates and remembers one uid per owner; one instance per agent. */
export class JobUsers {
  readonly policy: JobUserPolicy;
  readonly #path: string;
  readonly #owners = new Map<string, number>();

  constructor(opts: { stateDir: string; policy: JobUserPolicy; onCorrupt?: (err: unknown) => void }) {
    this.policy = opts.policy;
    this.#path = join(opts.stateDir, USERS_FILE);
    let file: UsersFile | undefined;
    try {
      file = readJsonIfPresent<UsersFile>(this.#path);
    } catch (err) {
      // A lost allocation only renumbers future jobs; it must not keep the agent from starting.
      opts.onCorrupt?.(err);
    }
    for (const [owner, uid] of Object.entries(file?.owners ?? {})) {
      if (Number.isInteger(uid)) this.#owners.set(owner, uid);
    }
  }

  /** The credentials a job of `owner` runs with; undefined means "as the agent". */
  credentialsOf(owner: string): JobCredentials | undefined {
    const policy = this.policy;
    if (policy.mode === 'agent') return undefined;
    if (policy.mode === 'single') return { uid: policy.uid, gid: policy.gid };
    let uid = this.#owners.get(owner);
    if (uid === undefined) {
      uid = this.#allocate(policy.first, policy.last);
      this.#owners.set(owner, uid);
      writeJsonAtomic(this.#path, {
        version: 1,
        owners: Object.fromEntries(this.#owners),
      } satisfies UsersFile);
    }
    return { uid, gid: uid };
  }

  /** Every uid handed out so far (to take stale device grants back after a restart). */
  allocatedUids(): number[] {
    return [...this.#owners.values()];
  }

  #allocate(first: number, last: number): number {
    const used = new Set(this.#owners.values());
    // Read at each allocation (rare): a user the host gained since the agent started is skipped too.
    const taken = hostIds();
    for (let uid = first; uid <= last; uid++) {
      if (!used.has(uid) && !taken.has(uid)) return uid;
    }
    throw new JigletError(
      'JIGLET_E_RESOURCE_EXHAUSTED',
      `every job uid from ${first} to ${last} is allocated; widen jobUsers.uidRange in the agent config`,
    );
  }
}

/** Reads the uid and gid columns of the host's passwd and group files. */
function hostIds(): Set<number> {
  const ids = new Set<number>();
  for (const file of ['/etc/passwd', '/etc/group']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // a host without one of them simply has no ids to avoid there
    }
    for (const line of text.split('\n')) {
      const id = Number(line.split(':')[2]);
      if (line !== '' && Number.isInteger(id)) ids.add(id);
    }
  }
  return ids;
}

/** The policy an agent gets when its config names none. */
export function defaultJobUserPolicy(): JobUserPolicy {
  return process.getuid?.() === 0 ? { mode: 'per-owner', ...DEFAULT_JOB_UID_RANGE } : { mode: 'agent' };
}
