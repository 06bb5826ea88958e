/**
 * The state directory's size (issue 11): what the job folders take (the retention policy's
 * bound), the image cache, the run record's journals, and what retention removed. Read at scrape
 * time from the supervisor's index and the image cache, so the figures cannot drift.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Retention } from '../jobs/retention.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { RECORDS_DIR } from '../timeline/run-recorder.js';

/** What the state-size metrics read. */
export interface StateSizeSources {
  supervisor: Supervisor;
  retention?: Retention;
  /** The image cache's bytes. */
  imageBytes?: () => number;
  stateDir?: string;
}

/** Registers the state-size metrics on `registers`. */
export function registerStateSize(registers: Registry[], sources: () => StateSizeSources | undefined): void {
  new Gauge({
    name: 'jiglet_state_bytes',
    help: 'Bytes the state directory holds, by part: jobs (records, logs, work dirs), images, records (run journals)',
    labelNames: ['part'],
    registers,
    collect() {
      const s = sources();
      if (!s) return;
      s.supervisor.refreshLiveBytes();
      this.set({ part: 'jobs' }, s.supervisor.index.bytes);
      if (s.imageBytes) this.set({ part: 'images' }, s.imageBytes());
      if (s.stateDir) this.set({ part: 'records' }, folderBytes(join(s.stateDir, RECORDS_DIR)));
    },
  });
  new Gauge({
    name: 'jiglet_state_jobs',
    help: 'Jobs kept in the state directory (live and finished); the retention policy bounds it',
    registers,
    collect() {
      this.set(sources()?.supervisor.index.size ?? 0);
    },
  });
  new Counter({
    name: 'jiglet_jobs_pruned_total',
    help: 'Finished jobs deleted by the retention policy since the agent started',
    registers,
    collect() {
      this.reset();
      this.inc(sources()?.retention?.totals.pruned ?? 0);
    },
  });
  new Counter({
    name: 'jiglet_jobs_pruned_bytes_total',
    help: 'Bytes freed by the retention policy since the agent started',
    registers,
    collect() {
      this.reset();
      this.inc(sources()?.retention?.totals.bytesFreed ?? 0);
    },
  });
}

/** Sum of the sizes of the files directly in `dir` (the journals: a handful of files). */
function folderBytes(dir: string): number {
  let total = 0;
  try {
    for (const name of readdirSync(dir)) {
      try {
        total += statSync(join(dir, name)).size;
      } catch {
        // Rotated away between the listing and the stat: it holds nothing any more.
      }
    }
  } catch {
    // No journal written yet.
  }
  return total;
}
