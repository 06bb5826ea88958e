/**
 * What the agent must remember about a DUT across restarts: whether its medium is "dirty" (a
 * flash started and did not complete) and what was last flashed. Saved (durably) before a flash
 * starts, so an agent killed mid-flash, or a host that lost power, comes back knowing the medium
 * cannot be trusted.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { writeJsonAtomic } from '../state/atomic-json.js';
import { loadJsonState } from '../state/damaged-file.js';

/** The remembered state of one DUT's storage. */
export interface DutStorageState {
  dirty: boolean;
  lastJobId: string;
  lastImageSha256: string;
  lastFlashedAt: number;
}

const StorageStateSchema: z.ZodType<DutStorageState> = z.object({
  dirty: z.boolean(),
  lastJobId: z.string(),
  lastImageSha256: z.string(),
  lastFlashedAt: z.number(),
});

/** Reads and writes `<state>/duts/<name>.json`. */
export class DutStateFile {
  readonly #path: string;
  readonly #log: Logger;

  constructor(stateDir: string, dut: string, log: Logger) {
    const dir = join(stateDir, 'duts');
    mkdirSync(dir, { recursive: true });
    this.#path = join(dir, `${dut}.json`);
    this.#log = log;
  }

  /**
   * The saved state; a DUT never flashed by this agent is clean. A damaged file is moved aside
   * and the medium counts as dirty: nobody knows any more what is on it.
   */
  load(): DutStorageState {
    const loaded = loadJsonState(this.#path, StorageStateSchema, {
      log: this.#log,
      reset: 'the medium counts as dirty until the next flash',
    });
    if (loaded.state === 'ok') return loaded.value;
    return { dirty: loaded.state === 'damaged', lastJobId: '', lastImageSha256: '', lastFlashedAt: 0 };
  }

  save(state: DutStorageState): void {
    writeJsonAtomic(this.#path, state);
  }
}
