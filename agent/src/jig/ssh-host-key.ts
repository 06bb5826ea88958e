/**
 * The SSH host key the agent learnt for a DUT, kept in `<state>/duts/<name>.ssh-host-key.json`,
 * and the rule that decides whether a key the DUT shows is accepted. The first key seen is learnt
 * (trust on first use, as `ssh` does with StrictHostKeyChecking=accept-new); a different key later
 * is refused, unless the DUT's description says a reflash makes a new key (`hostKey:
 * relearn-after-flash`) and a flash through jiglet completed after the key was learnt.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { HostKeyPolicy } from '../../../jig-drivers/src/ssh-config.js';
import { writeJsonAtomic } from '../state/atomic-json.js';
import { loadJsonState } from '../state/damaged-file.js';

/** A learnt host key. */
export interface LearntHostKey {
  /** The public key blob (SSH wire format), base64. */
  key: string;
  /** `SHA256:…` as OpenSSH prints it. */
  fingerprint: string;
  learntAt: number;
  /** host:port it was learnt from. */
  endpoint: string;
}

const LearntHostKeySchema: z.ZodType<LearntHostKey> = z.object({
  key: z.string().min(1),
  fingerprint: z.string().min(1),
  learntAt: z.number(),
  endpoint: z.string(),
});

/** OpenSSH's fingerprint of a public key blob: `SHA256:` and the unpadded base64 of its hash. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Reads and writes one DUT's learnt host key. */
export class HostKeyFile {
  readonly #path: string;
  readonly #log: Logger;

  constructor(stateDir: string, dut: string, log: Logger) {
    const dir = join(stateDir, 'duts');
    mkdirSync(dir, { recursive: true });
    this.#path = join(dir, `${dut}.ssh-host-key.json`);
    this.#log = log;
  }

  /** The learnt key; none when never learnt, or when the file was damaged (moved aside, logged). */
  load(): LearntHostKey | undefined {
    const loaded = loadJsonState(this.#path, LearntHostKeySchema, {
      log: this.#log,
      reset: 'the next host key the DUT shows is learnt',
    });
    return loaded.state === 'ok' ? loaded.value : undefined;
  }

  save(key: LearntHostKey): void {
    writeJsonAtomic(this.#path, key);
  }

  remove(): void {
    rmSync(this.#path, { force: true });
  }
}

/** What the agent does with the key a DUT shows. */
export type HostKeyVerdict =
  | { accept: true; change: 'same' | 'learnt' | 'relearnt'; key: LearntHostKey; previous?: LearntHostKey }
  | { accept: false; reason: string };

/** What the verdict depends on. */
export interface HostKeyFacts {
  dut: string;
  endpoint: string;
  policy: HostKeyPolicy;
  learnt: LearntHostKey | undefined;
  shown: Buffer;
  /** When a flash of the DUT through this agent last completed (0: never). */
  lastFlashedAt: number;
  now: number;
}

/** Accepts the same key, learns a first one, re-learns after a flash where allowed; refuses the rest. */
export function judgeHostKey(facts: HostKeyFacts): HostKeyVerdict {
  const shown: LearntHostKey = {
    key: facts.shown.toString('base64'),
    fingerprint: fingerprintOf(facts.shown),
    learntAt: facts.now,
    endpoint: facts.endpoint,
  };
  const { learnt } = facts;
  if (!learnt) return { accept: true, change: 'learnt', key: shown };
  if (learnt.key === shown.key) return { accept: true, change: 'same', key: learnt };
  const since = new Date(learnt.learntAt).toISOString();
  if (facts.policy === 'relearn-after-flash' && facts.lastFlashedAt > learnt.learntAt)
    return { accept: true, change: 'relearnt', key: shown, previous: learnt };
  const why =
    facts.policy === 'relearn-after-flash'
      ? `and ${facts.dut} was not flashed through jiglet since`
      : `and its description pins the key (ssh.hostKey: pinned)`;
  return {
    accept: false,
    reason:
      `the SSH host key of ${facts.dut} at ${facts.endpoint} changed: jiglet learnt ${learnt.fingerprint} ` +
      `on ${since}, the DUT now shows ${shown.fingerprint}, ${why}. Something else may answer at that ` +
      `address. If the DUT was reinstalled, an admin makes jiglet forget the old key: jigctl dut forget-host-key ${facts.dut}`,
  };
}
