/**
 * The test cases a user's job left in its `$JIGLET_RESULTS` folder, read when it ended. Parsing
 * is CPU work in proportion to what the job wrote (about 5 s for 16 MiB of JUnit on our CI
 * machines), so it runs in a worker thread, bounded in time, and only when there is an `.xml`
 * file to read at all; the agent's event loop keeps serving meanwhile.
 */
import { readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { ReadResults, ReadResultsOptions } from '../../../protocol/src/junit-files.js';

/**
 * The worker's compiled file: beside this one in dist; when this file runs as TypeScript (tests
 * under tsx, whose loader a worker does not get), the build's copy, as the tests' jig-driver is.
 */
const WORKER_URL = new URL(
  import.meta.url.endsWith('.ts') ? '../../../dist/agent/src/jobs/results-worker.js' : './results-worker.js',
  import.meta.url,
);

/** A results folder taking longer than this is given up (and said so in the record). */
export const RESULTS_READ_TIMEOUT_MS = 30_000;

/** Reads the folder in a worker; never rejects (a problem becomes `error`). */
export async function readJobResults(dir: string, opts: ReadResultsOptions): Promise<ReadResults> {
  try {
    if (!readdirSync(dir).some((n) => n.endsWith('.xml'))) return { cases: [] };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { cases: [] };
    return { cases: [], error: `could not read $JIGLET_RESULTS: ${(err as Error).message}` };
  }
  return new Promise<ReadResults>((resolve) => {
    const worker = new Worker(WORKER_URL, {
      workerData: { dir, opts },
      // A hostile file cannot take the agent's memory with it.
      resourceLimits: { maxOldGenerationSizeMb: 256 },
    });
    let settled = false;
    const done = (r: ReadResults): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        done({
          cases: [],
          error: `reading $JIGLET_RESULTS took over ${RESULTS_READ_TIMEOUT_MS / 1000} s; given up`,
        }),
      RESULTS_READ_TIMEOUT_MS,
    );
    worker.once('message', (r: ReadResults) => done(r));
    worker.once('error', (err) =>
      done({ cases: [], error: `reading $JIGLET_RESULTS failed: ${err.message}` }),
    );
    worker.once('exit', (code) =>
      done({ cases: [], error: `reading $JIGLET_RESULTS stopped (worker exit ${code})` }),
    );
  });
}
