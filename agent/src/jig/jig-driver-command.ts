/**
 * How the agent invokes the `jig-driver` executable for hardware jobs. Production runs the
 * bundled file (dist/bundle/jig-driver.js, built by `npm run build`) next to the agent's own
 * compiled code; tests and odd installs pass their own command.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The program and leading arguments that run `jig-driver`. */
export interface JigDriverCommand {
  command: string;
  args: string[];
  /** Put before `args` for the long-lived serial capture only (Node flags: `command` is node). */
  captureArgs?: string[];
  /** Put before `args` for a flash only (Node flags, as captureArgs). */
  flashArgs?: string[];
}

/**
 * Node flags for the serial capture. A capture lives as long as the agent and allocates a little
 * per chunk; V8's default 16 MiB semi-spaces let its young generation grow to tens of MiB for
 * nothing, so each capture is kept small (measured in `npm run bench`). Not for a power action or
 * a flash: a 1 MiB young generation means many more scavenges while ~1 MB of code loads, which made
 * a cold power action ~15% slower.
 */
export const JIG_DRIVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * Node flags for a flash. It moves gigabytes through short-lived Buffers (file reads, zlib's
 * output) over a heap of ~10 MiB, and V8 counts those Buffers' memory towards its first
 * old-generation limit: with the default one it ran a full mark-compact every ~15 MiB of image
 * (31 for a 512 MiB `.gz`), ~20% of the flasher's CPU. With a 64 MiB start none ran, the young
 * generation's scavenges freed the Buffers, and the flash took 2.1 s instead of 2.5–3.0 s with
 * the same peak RSS (standalone, 512 MiB `.gz`, interleaved; README, Benchmarks).
 */
export const FLASH_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/**
 * `node <dist>/bundle/jig-driver.js`, found relative to this compiled module. One bundle starts faster
 * than the ~100 separate modules it is made of (README, Benchmarks).
 */
export function defaultJigDriverCommand(): JigDriverCommand {
  const script = bundledScript('jig-driver.js', import.meta.url);
  return {
    command: process.execPath,
    args: [script],
    captureArgs: [...JIG_DRIVER_NODE_FLAGS],
    flashArgs: [...FLASH_NODE_FLAGS],
  };
}

/**
 * A bundled binary's path (`dist/bundle/NAME`) from a module under dist/agent/src/<folder>/, or,
 * when running from TypeScript sources (tsx), from agent/src/<folder>/.
 */
export function bundledScript(name: string, moduleUrl: string): string {
  const compiled = fileURLToPath(new URL(`../../../bundle/${name}`, moduleUrl));
  return existsSync(compiled) ? compiled : fileURLToPath(new URL(`../../../dist/bundle/${name}`, moduleUrl));
}
