/**
 * How the agent invokes the `jig-driver` executable for hardware jobs. Production runs the
 * compiled file next to the agent's own; tests and odd installs pass their own command.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The program and leading arguments that run `jig-driver`. */
export interface JigDriverCommand {
  command: string;
  args: string[];
}

/** `node <dist>/jig-drivers/src/jig-driver.js`, found relative to this compiled module. */
export function defaultJigDriverCommand(): JigDriverCommand {
  const compiled = fileURLToPath(new URL('../../../jig-drivers/src/jig-driver.js', import.meta.url));
  if (existsSync(compiled)) return { command: process.execPath, args: [compiled] };
  // Running from TypeScript sources (tsx): the compiled driver lives under dist/.
  const built = fileURLToPath(new URL('../../../dist/jig-drivers/src/jig-driver.js', import.meta.url));
  return { command: process.execPath, args: [built] };
}
