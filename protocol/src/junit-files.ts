/**
 * A results folder (`$JIGLET_RESULTS`): the JUnit XML files a run wrote there, read bounded. The
 * agent reads a user's job's folder when the job ends (its record keeps the cases); `jigctl claim
 * --exec` reads its command's. The folder may hold anything, so files are opened without
 * following links, must be regular files (owned by `uid` when one is given: a link to an agent
 * file is refused), and a file that is not JUnit is reported, not fatal.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_TEST_CASES, parseJunit, type TestCase } from './test-cases.js';

/** All results files together are read up to this many bytes; the rest is reported as skipped. */
export const MAX_RESULTS_BYTES = 16 * 1024 * 1024;
/** Most files looked at (a job could create millions of names). */
const MAX_RESULTS_FILES = 1000;
/**
 * The cases kept take at most this many bytes (as JSON) by default: a job's record holds them,
 * records of recent jobs stay in the agent's memory and go out in ListJobs pages, so they stay
 * small. The files themselves hold the rest.
 */
export const MAX_KEPT_CASES_BYTES = 1024 * 1024;
/** Most problems listed in `error`. */
const MAX_PROBLEMS = 5;

/** What the folder held. */
export interface ReadResults {
  cases: TestCase[];
  /** Problems (not JUnit, too big, too many), one sentence each; undefined when there were none. */
  error?: string;
}

/** How a folder is read. */
export interface ReadResultsOptions {
  /** Only files this uid owns are read (a job's, when the agent reads as root). */
  uid?: number;
  /** Bytes of cases kept (as JSON); default MAX_KEPT_CASES_BYTES. */
  maxCaseBytes?: number;
}

/**
 * Reads `*.xml` in `dir` (name order). A missing folder or an empty one gives no cases and no
 * error.
 */
export function readResults(dir: string, opts: ReadResultsOptions = {}): ReadResults {
  const { uid } = opts;
  const maxCaseBytes = opts.maxCaseBytes ?? MAX_KEPT_CASES_BYTES;
  const problems: string[] = [];
  let names: string[];
  try {
    const stat = lstatSync(dir);
    if (!stat.isDirectory()) return { cases: [], error: `the results folder ${dir} is not a folder` };
    names = readdirSync(dir)
      .filter((n) => n.endsWith('.xml'))
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { cases: [] };
    return { cases: [], error: `could not read the results folder ${dir}: ${(err as Error).message}` };
  }
  if (names.length > MAX_RESULTS_FILES) {
    problems.push(`${names.length} .xml files; only the first ${MAX_RESULTS_FILES} were read`);
    names = names.slice(0, MAX_RESULTS_FILES);
  }
  const cases: TestCase[] = [];
  let budget = MAX_RESULTS_BYTES;
  let caseBytes = 0;
  let dropped = 0;
  for (const name of names) {
    if (budget <= 0) {
      problems.push(`${name} and later files were not read: the results total more than 16 MiB`);
      break;
    }
    const read = readBounded(join(dir, name), budget, uid);
    if ('problem' in read) {
      problems.push(`${name}: ${read.problem}`);
      continue;
    }
    budget -= read.bytes;
    if (read.truncated) {
      problems.push(`${name} was not read: the results total more than 16 MiB`);
      continue;
    }
    let found: TestCase[];
    try {
      found = parseJunit(read.text, name);
    } catch (err) {
      problems.push((err as Error).message);
      continue;
    }
    // parseJunit keeps a file's first MAX_TEST_CASES cases and drops the rest without a word.
    if (found.length >= MAX_TEST_CASES)
      problems.push(`${name}: only its first ${MAX_TEST_CASES} test cases are read`);
    for (const c of found) {
      const size = JSON.stringify(c).length;
      if (cases.length >= MAX_TEST_CASES || caseBytes + size > maxCaseBytes) dropped++;
      else {
        cases.push(c);
        caseBytes += size;
      }
    }
  }
  if (dropped > 0) problems.push(`${dropped} test cases were left out: ${cases.length} are kept`);
  if (problems.length === 0) return { cases };
  const shown = problems.slice(0, MAX_PROBLEMS);
  if (problems.length > MAX_PROBLEMS) shown.push(`and ${problems.length - MAX_PROBLEMS} more problems`);
  return { cases, error: shown.join('; ') };
}

/** A file's text, at most `max` bytes; refuses links, non-files and files the job does not own. */
function readBounded(
  path: string,
  max: number,
  uid: number | undefined,
): { text: string; bytes: number; truncated: boolean } | { problem: string } {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO named *.xml must not hang the agent; O_NOFOLLOW: no link to elsewhere.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === 'ELOOP' ? 'is a symbolic link, not a file' : `could not be opened (${code})` };
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { problem: 'is not a regular file' };
    if (uid !== undefined && stat.uid !== uid) return { problem: "is not owned by the job's user" };
    const want = Math.min(stat.size, max);
    const buf = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, got);
      if (n === 0) break;
      got += n;
    }
    return { text: buf.subarray(0, got).toString('utf8'), bytes: got, truncated: stat.size > max };
  } finally {
    closeSync(fd);
  }
}
