/**
 * Finds the program a job names before spawning it, so "no such program" is a clear `failed`
 * job instead of an exit code 127 from the shim.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

/** The executable's absolute path, or why there is none. */
export type ResolvedCommand = { ok: true; path: string } | { ok: false; reason: string };

/** Resolves `command` like execvp does: a name with a slash is a path, anything else is looked up on PATH. */
export function resolveExecutable(command: string, pathVar: string, cwd: string): ResolvedCommand {
  if (command.includes('/')) {
    const path = isAbsolute(command) ? command : resolve(cwd, command);
    const problem = whyNotExecutable(path);
    return problem ? { ok: false, reason: `${command}: ${problem}` } : { ok: true, path };
  }
  for (const dir of pathVar.split(':')) {
    if (dir === '') continue;
    const path = join(dir, command);
    if (whyNotExecutable(path) === null) return { ok: true, path };
  }
  // The PATH itself stays out: the agent's is long and tool-specific (npx, systemd), and what a
  // user can act on is "give a full path".
  return { ok: false, reason: `command not found: ${command} (not on the agent's PATH; give a full path)` };
}

function whyNotExecutable(path: string): string | null {
  try {
    if (statSync(path).isDirectory()) return 'is a directory';
    accessSync(path, constants.X_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such file';
    if (code === 'EACCES') return 'permission denied (not executable)';
    return `not usable (${code})`;
  }
}
