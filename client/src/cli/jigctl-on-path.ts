/**
 * Puts this very jigctl on the PATH of a command jigctl runs (`claim --exec`), so `jigctl …`
 * inside it works without an install: the folder of the `jigctl` we were started as when it has
 * that name (an npm bin link, an agent's job shim), else a temporary folder with a shim.
 */
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

/** A folder holding `jigctl`, and how to clean it up. */
export interface JigctlDir {
  dir: string;
  dispose(): void;
}

/** The folder to prepend to PATH; `script` is process.argv[1] of this jigctl. */
export function jigctlDir(script: string | undefined = process.argv[1]): JigctlDir | undefined {
  if (script === undefined) return undefined;
  if (basename(script) === 'jigctl') return { dir: dirname(script), dispose: () => undefined };
  const dir = mkdtempSync(join(tmpdir(), 'jigctl-bin-'));
  const quote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;
  writeFileSync(
    join(dir, 'jigctl'),
    `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(realpathSync(script))} "$@"\n`,
    { mode: 0o755 },
  );
  return { dir, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
