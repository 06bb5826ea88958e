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

/**
 * Node flags for driver processes. A serial capture lives as long as the agent and allocates a
 * little per chunk; V8's default 16 MiB semi-spaces let its young generation grow to tens of MiB
 * for nothing, so each capture is kept small (measured in `npm run bench`).
 */
export const JIG_DRIVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** `node <dist>/jig-drivers/src/jig-driver.js`, found relative to this compiled module. */
export function defaultJigDriverCommand(): JigDriverCommand {
  const compiled = fileURLToPath(new URL('../../../jig-drivers/src/jig-driver.js', import.meta.url));
  // Running from TypeScript sources (tsx): the compiled driver lives under dist/.
  const script = existsSync(compiled)
    ? compiled
    : fileURLToPath(new URL('../../../dist/jig-drivers/src/jig-driver.js', import.meta.url));
  return { command: process.execPath, args: [...JIG_DRIVER_NODE_FLAGS, script] };
}
