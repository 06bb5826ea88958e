/**
 * A state file the agent cannot read back (a disk that lost blocks, a hand edit gone wrong, a
 * bit flip) is never a reason not to start: it is moved aside as `NAME.corrupt-TIMESTAMP` for a
 * person to look at, the error goes to the log, and the part of the state it held starts over.
 * Each owner of a file says what "starts over" means for its part (see the README, Supervision).
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { fsyncDir } from './atomic-json.js';

/** What reading a JSON state file found. */
export type LoadedState<T> =
  | { state: 'ok'; value: T }
  | { state: 'missing' }
  | { state: 'damaged'; movedTo: string };

/** Marks a moved-aside file; loaders that list a folder skip names that carry it. */
export const DAMAGED_MARK = '.corrupt-';

/**
 * Renames `path` to `path.corrupt-<ISO time>` (colons as dashes) and makes the rename durable;
 * returns the new path. Never overwrites an earlier one.
 */
export function moveAside(path: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/:/g, '-');
  let target = `${path}${DAMAGED_MARK}${stamp}`;
  for (let n = 1; existsSync(target); n++) target = `${path}${DAMAGED_MARK}${stamp}-${n}`;
  renameSync(path, target);
  fsyncDir(dirname(path));
  return target;
}

/** Logs, as an error, that `path` was damaged and moved aside; `reset` says what starts over. */
export function reportDamaged(
  log: Logger,
  path: string,
  movedTo: string,
  problem: string,
  reset: string,
): void {
  log.error(
    { file: path, movedTo, problem },
    `state file ${path} is damaged (${problem}); moved it aside to ${movedTo}; ${reset}`,
  );
}

/**
 * Reads a JSON state file and checks its shape. A file that is not JSON or not of that shape is
 * moved aside and reported (`reset` completes the log line); a missing file is just missing.
 * Other read errors (permissions, I/O) are thrown: they are the host's to fix, not the file's.
 */
export function loadJsonState<T>(
  path: string,
  schema: z.ZodType<T>,
  opts: { log: Logger; reset: string },
): LoadedState<T> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'missing' };
    throw err;
  }
  const problem = shapeProblem(text, schema);
  if (problem.ok) return { state: 'ok', value: problem.value };
  const movedTo = moveAside(path);
  reportDamaged(opts.log, path, movedTo, problem.problem, opts.reset);
  return { state: 'damaged', movedTo };
}

/** Parses `text` as JSON of `schema`'s shape, or says in a few words why it is not. */
export function shapeProblem<T>(
  text: string,
  schema: z.ZodType<T>,
): { ok: true; value: T } | { ok: false; problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: text.length === 0 ? 'empty' : `not JSON: ${(err as Error).message}` };
  }
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return { ok: false, problem: `unexpected content: ${where}${issue?.message ?? 'invalid'}` };
}
