/**
 * Where a report goes: a file, written whole or not at all (a half-written report is worse than
 * none), or stdout for `-o -`.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { writeOut } from '../cli/write-out.js';

/** Writes `text` to `path` through a temporary file and a rename. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw invalidArgument(`cannot write ${path}: ${(err as Error).message}`);
  }
}

/** Writes the report to `output` and prints its path, or with `-` writes it to stdout. */
export async function writeReport(html: string, output: string): Promise<void> {
  if (output === '-') {
    await writeOut(process.stdout, Buffer.from(html));
    return;
  }
  writeFileAtomic(output, html);
  await writeOut(process.stdout, Buffer.from(`${output}\n`));
}
