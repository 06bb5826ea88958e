/**
 * What the agent must remember about a DUT's health across restarts: its state and who set it,
 * the last health check, and how many leases have ended since (so "every N jobs" keeps counting
 * through a restart). A sibling of the storage state file, `<state>/duts/<name>.health.json`
 * (DUT names have no dots, so it cannot clash with another DUT's file).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';

/** Whether a DUT may be leased: `good`, or held back by a failed check or an admin. */
export type HealthState = 'good' | 'bad' | 'maintenance';

/** The remembered health of one DUT. */
export interface DutHealthRecord {
  state: HealthState;
  /** Why it is in that state ("health check passed", an admin's words, a failed check's exit). */
  reason: string;
  /** Who set it: an identity name, or `@jiglet-health` for a check. */
  by: string;
  changedAt: number;
  /** The last check: when it ended (0 = never), its job, and whether it passed. */
  lastCheckAt: number;
  lastCheckJobId: string;
  lastCheckPassed: boolean;
  /** Leases of the DUT that ended since the last check (the check's own excluded). */
  leasesSinceCheck: number;
  /** When counting time started, for a DUT never checked: "every N hours" runs from here. */
  since: number;
}

/** Reads and writes `<state>/duts/<name>.health.json`. */
export class DutHealthFile {
  readonly #path: string;

  constructor(stateDir: string, dut: string) {
    const dir = join(stateDir, 'duts');
    mkdirSync(dir, { recursive: true });
    this.#path = join(dir, `${dut}.health.json`);
  }

  /** The saved record; a DUT seen for the first time is good, and that is saved at once. */
  load(now: number): DutHealthRecord {
    const saved = readJsonIfPresent<DutHealthRecord>(this.#path);
    if (saved) return saved;
    const fresh: DutHealthRecord = {
      state: 'good',
      reason: '',
      by: '',
      changedAt: now,
      lastCheckAt: 0,
      lastCheckJobId: '',
      lastCheckPassed: false,
      leasesSinceCheck: 0,
      since: now,
    };
    // Saved now, or a host restarted more often than everyHours would never come due.
    this.save(fresh);
    return fresh;
  }

  save(record: DutHealthRecord): void {
    writeJsonAtomic(this.#path, record);
  }
}
