/**
 * Test-case results for jigctl's commands that run a test: `claim --exec` gives its command a
 * `$JIGLET_RESULTS` folder and reads the JUnit files it wrote; `run` reads the cases from the
 * job's final record. Both print the same summary to stderr (stdout stays the command's own).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readResults } from '../../../protocol/src/junit-files.js';
import { type TestCase, testCaseSummary } from '../../../protocol/src/test-cases.js';

/** Most failed cases listed by name; the rest are counted. */
const MAX_LISTED_FAILURES = 20;
/** A failure's message is cut to this many characters in the summary. */
const MAX_SUMMARY_MESSAGE = 300;

/** The summary's lines: the counts, then each failed or errored case with its message. */
export function resultsSummary(cases: readonly TestCase[], error?: string): string {
  const lines: string[] = [];
  if (cases.length > 0) {
    lines.push(`jigctl: ${testCaseSummary(cases)}`);
    const bad = cases.filter((c) => c.status === 'failed' || c.status === 'error');
    for (const c of bad.slice(0, MAX_LISTED_FAILURES)) {
      const message = c.message.split('\n')[0]!.slice(0, MAX_SUMMARY_MESSAGE);
      lines.push(
        `  ${c.status === 'error' ? 'ERROR' : 'FAIL'} ${c.suite ? `${c.suite} › ` : ''}${c.name}${message ? `: ${message}` : ''}`,
      );
    }
    if (bad.length > MAX_LISTED_FAILURES) lines.push(`  … and ${bad.length - MAX_LISTED_FAILURES} more`);
  }
  if (error) lines.push(`jigctl: some test results could not be read: ${error}`);
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** A results folder for a local command, and how to finish with it. */
export interface LocalResults {
  /** The folder `$JIGLET_RESULTS` names. */
  dir: string;
  /** Reads the folder, returns the summary to print ('' when it holds no results), and removes
   * the folder unless the user named it. */
  finish(): string;
}

/**
 * A fresh temporary results folder, removed after the command; or `keep`, the folder `--results`
 * named (created if missing, kept with the files for the CI system to collect).
 */
export function localResults(keep?: string): LocalResults {
  const dir = keep ? resolve(keep) : mkdtempSync(join(tmpdir(), 'jigctl-results-'));
  if (keep) mkdirSync(dir, { recursive: true });
  return {
    dir,
    finish(): string {
      try {
        const { cases, error } = readResults(dir);
        return resultsSummary(cases, error);
      } finally {
        if (!keep) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
