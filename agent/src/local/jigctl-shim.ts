/**
 * `jigctl` on every job's PATH: `<state>/bin/jigctl`, a two-line shell script that runs the
 * agent's own bundled jigctl with the agent's own node, so a job needs nothing installed and
 * always speaks the agent's protocol version. Rewritten at every start (the agent may have moved).
 */
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundledScript } from '../jig/jig-driver-command.js';

/** The folder on jobs' PATH, in the state directory. */
export const JOB_BIN_DIR = 'bin';
/** Jobs run as other uids: they pass through the folder (no listing) and read and run the shim, never change it. */
const DIR_MODE = 0o711;
const SHIM_MODE = 0o755;

/** The bundled jigctl next to this agent (dist/bundle/jigctl.js; under dist/ when running from sources with tsx). */
export function defaultJigctlScript(): string {
  return bundledScript('jigctl.js', import.meta.url);
}

/** Writes `<stateDir>/bin/jigctl` and returns the folder to put on jobs' PATH. */
export async function writeJigctlShim(stateDir: string, script = defaultJigctlScript()): Promise<string> {
  const dir = join(stateDir, JOB_BIN_DIR);
  await mkdir(dir, { recursive: true });
  await chmod(dir, DIR_MODE);
  const path = join(dir, 'jigctl');
  const text = `#!/bin/sh\n# Written by jiglet at start: the agent's own jigctl.\nexec ${shellQuote(process.execPath)} ${shellQuote(script)} "$@"\n`;
  // Replaced whole, so a job starting jigctl now never reads half a script.
  await writeFile(`${path}.new`, text, { mode: SHIM_MODE });
  await chmod(`${path}.new`, SHIM_MODE);
  await rename(`${path}.new`, path);
  return dir;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
