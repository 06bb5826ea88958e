/**
 * Placeholders in a config file's strings, so that one jig description can run many times on one
 * host (a hand-run jig, the demo and the tests side by side) without fixed ports or folders:
 *
 *   ${stateDir}    the agent's state directory (after --state-dir)
 *   ${configDir}   the folder the config file is in
 *   ${tmpDir}      the host's folder for temporary files (os.tmpdir()), for caches every agent on
 *                  the host may share because they are filled under a lock
 *   ${port:NAME}   a free TCP port on 127.0.0.1, picked once when the agent starts; every
 *                  `${port:NAME}` with the same NAME in the file is the same port
 *
 * Any other `${…}` is left as written (a service's shell command may use `${HOME}`), except one that
 * is a known name spelt in another case, which is a typo and refused.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { invalidArgument } from '../../protocol/src/errors.js';

/** `${name}` or `${name:argument}`. */
const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_-]*)(?::([^}]*))?\}/g;
/** A port's name: what it is for, as a person would call it (`vdut-a-power`). */
const PORT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** The placeholders that name a folder. */
const FOLDERS = ['stateDir', 'configDir', 'tmpDir'] as const;

/** A folder a placeholder stands for. */
export type PlaceholderFolder = (typeof FOLDERS)[number];

/** What the placeholders stand for; a folder left out may not be used (stateDir inside stateDir). */
export interface PlaceholderValues {
  folders: Partial<Record<PlaceholderFolder, string>>;
  /** The port for a name; the same name gives the same port. Absent: ports may not be used here. */
  port?: (name: string) => number;
}

/** Where a string sits in the file, for messages: `services[0].args[3]`. */
function keyPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('') || '(top)';
}

/** Calls `visit` with every placeholder in every string of `value`. */
function eachPlaceholder(value: unknown, visit: (name: string, arg: string | undefined) => void): void {
  if (typeof value === 'string') {
    for (const m of value.matchAll(PLACEHOLDER)) visit(m[1]!, m[2]);
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) eachPlaceholder(v, visit);
  }
}

/** The names of the `${port:NAME}` placeholders in `value`, each once. */
export function portNames(value: unknown): string[] {
  const names = new Set<string>();
  eachPlaceholder(value, (name, arg) => {
    if (name === 'port' && arg !== undefined) names.add(arg);
  });
  return [...names];
}

/** One free port for each name (distinct ports: a port is held until all are picked). */
export async function freePorts(names: string[]): Promise<Map<string, number>> {
  const servers = [];
  const ports = new Map<string, number>();
  try {
    for (const name of names) {
      const server = createServer().listen(0, '127.0.0.1');
      servers.push(server);
      await once(server, 'listening');
      ports.set(name, (server.address() as { port: number }).port);
    }
  } finally {
    for (const server of servers) server.close();
    await Promise.all(servers.map((s) => (s.listening ? once(s, 'close') : undefined)));
  }
  return ports;
}

/**
 * `value` with every placeholder in its strings replaced; a misused one is an invalid-argument
 * error naming the file, the key and what to write instead.
 */
export function expandPlaceholders(value: unknown, values: PlaceholderValues, file: string): unknown {
  const problems: string[] = [];
  const expand = (text: string, path: (string | number)[]): string =>
    text.replace(PLACEHOLDER, (whole, name: string, arg: string | undefined) => {
      const where = `${file}: ${keyPath(path)}`;
      if (name === 'port') {
        if (arg === undefined || !PORT_NAME.test(arg)) {
          problems.push(
            `${where}: ${whole}: expected \${port:NAME}, NAME of letters, digits, "-", "_" or "."`,
          );
          return whole;
        }
        if (!values.port) {
          problems.push(`${where}: ${whole}: a port cannot be used here`);
          return whole;
        }
        return String(values.port(arg));
      }
      const folder = FOLDERS.find((f) => f === name);
      if (folder) {
        const path = values.folders[folder];
        if (arg !== undefined) problems.push(`${where}: ${whole}: \${${folder}} takes no argument`);
        else if (path === undefined) problems.push(`${where}: ${whole} cannot be used here`);
        return path ?? whole;
      }
      const typo = [...FOLDERS, 'port'].find((known) => known.toLowerCase() === name.toLowerCase());
      if (typo) problems.push(`${where}: ${whole}: unknown placeholder; did you mean \${${typo}}?`);
      return whole;
    });
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (typeof v === 'string') return expand(v, path);
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]));
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, [...path, k])]));
    return v;
  };
  const out = walk(value, []);
  if (problems.length) throw invalidArgument(problems.join('\n'));
  return out;
}
