/**
 * What the agent must remember about a DUT's health across restarts: its state and who set it,
 * the last health check, and how many leases have ended since (so "every N jobs" keeps counting
 * through a restart). A sibling of the storage state file, `<state>/duts/<name>.health.json`
 * (DUT names have no dots, so it cannot clash with another DUT's file).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { writeJsonAtomic } from '../state/atomic-json.js';
import { loadJsonState } from '../state/damaged-file.js';

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

const HealthRecordSchema: z.ZodType<DutHealthRecord> = z.object({
  state: z.enum(['good', 'bad', 'maintenance']),
  reason: z.string(),
  by: z.string(),
  changedAt: z.number(),
  lastCheckAt: z.number(),
  lastCheckJobId: z.string(),
  lastCheckPassed: z.boolean(),
  leasesSinceCheck: z.number(),
  since: z.number(),
});

/** Who set the state of a DUT whose health file was damaged. */
export const STATE_FILE_SETTER = '@jiglet-state';

/** Reads and writes `<state>/duts/<name>.health.json`. */
export class DutHealthFile {
  readonly #path: string;
  readonly #dut: string;
  readonly #log: Logger;

  constructor(stateDir: string, dut: string, log: Logger) {
    const dir = join(stateDir, 'duts');
    mkdirSync(dir, { recursive: true });
    this.#path = join(dir, `${dut}.health.json`);
    this.#dut = dut;
    this.#log = log;
  }

  /**
   * The saved record; a DUT seen for the first time is good, and that is saved at once. A damaged
   * file is moved aside and the DUT goes to maintenance: it may have been quarantined or taken out
   * of service, and a lab must not hand out a board it knows nothing about. An admin sets it back.
   */
  load(now: number): DutHealthRecord {
    const dut = this.#dut;
    const loaded = loadJsonState(this.#path, HealthRecordSchema, {
      log: this.#log,
      reset: `${dut} is in maintenance until an admin sets it good (jigctl dut state ${dut} good)`,
    });
    if (loaded.state === 'ok') return loaded.value;
    const damaged = loaded.state === 'damaged';
    const fresh: DutHealthRecord = {
      state: damaged ? 'maintenance' : 'good',
      reason: damaged
        ? `its health file was damaged (moved aside to ${loaded.movedTo}); an admin sets it back with jigctl dut state ${dut} good`
        : '',
      by: damaged ? STATE_FILE_SETTER : '',
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
