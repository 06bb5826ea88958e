/**
 * Where the agent is and which certificate to present: flags first, then JIGLET_* variables,
 * then a named context in the config file (~/.config/jiglet/config.yaml or $JIGLET_CONFIG).
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { invalidArgument } from '../../protocol/src/errors.js';

/** Default agent address, matching `jiglet serve`'s default. */
export const DEFAULT_SERVER = '127.0.0.1:7411';

/** Everything needed to open a connection. */
export interface ConnectionSettings {
  /** HOST:PORT (mutual TLS), or unix:/path of an agent's local endpoint (no certificate, '' below). */
  server: string;
  ca: string;
  cert: string;
  key: string;
}

/** What a caller may pin down; anything left out comes from the environment or config file. */
export interface ConnectionFlags {
  server?: string;
  ca?: string;
  cert?: string;
  key?: string;
  context?: string;
  /** The lease mutating calls carry (env JIGLET_LEASE, as `jigctl claim --exec` sets it). */
  lease?: string;
}

interface ContextsFile {
  'current-context'?: string;
  contexts?: Record<string, Partial<ConnectionSettings>>;
}

/**
 * True for `unix:/path`, the local endpoint an agent gives its jobs (JIGLET_ADDR inside a job):
 * no TLS and no certificate, the agent knows the caller by the job its process runs in.
 */
export function isLocalAddress(server: string): boolean {
  return server.startsWith('unix:');
}

/** The config file path: $JIGLET_CONFIG or ~/.config/jiglet/config.yaml. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.JIGLET_CONFIG ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'jiglet', 'config.yaml')
  );
}

/** Resolves settings; throws JIGLET_E_INVALID_ARGUMENT naming what is missing and where it could come from. */
export function resolveConnection(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
): ConnectionSettings {
  const file = readContexts(configPath(env));
  const name = flags.context ?? env.JIGLET_CONTEXT ?? file?.data['current-context'];
  let ctx: Partial<ConnectionSettings> = {};
  if (name !== undefined) {
    const found = file?.data.contexts?.[name];
    if (!found) throw invalidArgument(`no context "${name}" in ${configPath(env)}`);
    ctx = Object.fromEntries(
      Object.entries(found).map(([k, v]) => [
        k,
        k !== 'server' && typeof v === 'string' ? fromFile(file!.dir, v) : v,
      ]),
    );
  }
  const pick = (
    flag: string | undefined,
    envName: string,
    key: keyof ConnectionSettings,
  ): string | undefined => flag ?? env[envName] ?? ctx[key];
  const server = pick(flags.server, 'JIGLET_ADDR', 'server') ?? DEFAULT_SERVER;
  // grpc-js would say 'Could not parse target name ""'.
  if (server.trim() === '') {
    throw invalidArgument("the agent's address is empty: give --server HOST:PORT or set JIGLET_ADDR");
  }
  // The agent's local endpoint: a job there is known by its process, not by a certificate.
  if (isLocalAddress(server)) return { server, ca: '', cert: '', key: '' };
  const ca = pick(flags.ca, 'JIGLET_CA', 'ca');
  const cert = pick(flags.cert, 'JIGLET_CERT', 'cert');
  const key = pick(flags.key, 'JIGLET_KEY', 'key');
  const missing = [!ca && '--ca/JIGLET_CA', !cert && '--cert/JIGLET_CERT', !key && '--key/JIGLET_KEY'].filter(
    Boolean,
  );
  if (missing.length > 0) {
    throw invalidArgument(
      `no client certificate configured: set ${missing.join(', ')}, or a context in ${configPath(env)}`,
    );
  }
  return { server, ca: ca!, cert: cert!, key: key! };
}

function readContexts(path: string): { dir: string; data: ContextsFile } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalidArgument(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return { dir: dirname(path), data: (parse(text) ?? {}) as ContextsFile };
  } catch (err) {
    throw invalidArgument(`${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}

function fromFile(dir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dir, p);
}
