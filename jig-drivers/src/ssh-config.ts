/**
 * The `ssh:` section of a DUT in the jig description: how the agent reaches the DUT's SSH server
 * once it has booted. The agent is the SSH client, so the private key stays on the jig host and
 * the description holds only its path (relative paths are next to the config file, as for the
 * shell's passwordFile).
 */
import { z } from 'zod';

/**
 * What a host key that differs from the one learnt means:
 * - `pinned`: refused, always (an admin removes the DUT's entry to accept a new key);
 * - `relearn-after-flash`: the DUT makes a new host key when it is reflashed, so the first key
 *   seen after a flash through jiglet is learnt (and recorded); any other change is refused.
 */
export type HostKeyPolicy = 'pinned' | 'relearn-after-flash';

/** A DUT's SSH endpoint, as the agent uses it. */
export interface SshConfig {
  host: string;
  port: number;
  user: string;
  /** The private key (OpenSSH or PEM format), readable by the agent only. */
  keyFile: string;
  hostKey: HostKeyPolicy;
  /** How long one attempt to connect and authenticate may take. */
  connectTimeoutMs: number;
}

/** One connection attempt's default bound: a booted DUT answers well within it. */
export const DEFAULT_SSH_CONNECT_TIMEOUT_MS = 10_000;

export const sshSchema = z.strictObject({
  host: z.string().min(1).max(253),
  // A `${port:NAME}` placeholder is filled in after the YAML is read, so a port may come as text.
  port: z.coerce.number().int().min(1).max(65_535).default(22),
  user: z.string().min(1).max(256).default('root'),
  // A path, never the key: descriptions are shared, logged and kept in git.
  keyFile: z.string().min(1, { error: 'expected the path of the private key the agent logs in with' }),
  hostKey: z.enum(['pinned', 'relearn-after-flash']).default('pinned'),
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(DEFAULT_SSH_CONNECT_TIMEOUT_MS),
});
