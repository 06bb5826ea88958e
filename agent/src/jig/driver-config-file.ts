/**
 * Driver configs handed to `jig-driver` jobs as `@FILE` rather than inline JSON (see jig-drivers'
 * config-arg.ts): a job's argv is visible to every viewer, and a power or mux config may hold
 * credentials. The files are the agent's own (0600, in a 0700 folder of the state directory).
 */
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes `config` as `<stateDir>/driver-config/<name>.json`; returns the `@FILE` argument. */
export function driverConfigArg(stateDir: string, name: string, config: unknown): string {
  const dir = join(stateDir, 'driver-config');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, `${name}.json`);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(config), { mode: 0o600 });
  renameSync(tmp, path);
  return `@${path}`;
}
