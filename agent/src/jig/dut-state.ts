/**
 * What the agent must remember about a DUT across restarts: whether its medium is "dirty" (a
 * flash started and did not complete) and what was last flashed. Saved before a flash starts, so
 * an agent killed mid-flash comes back knowing the medium cannot be trusted.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';

/** The remembered state of one DUT's storage. */
export interface DutStorageState {
  dirty: boolean;
  lastJobId: string;
  lastImageSha256: string;
  lastFlashedAt: number;
}

/** Reads and writes `<state>/duts/<name>.json`. */
export class DutStateFile {
  readonly #path: string;

  constructor(stateDir: string, dut: string) {
    const dir = join(stateDir, 'duts');
    mkdirSync(dir, { recursive: true });
    this.#path = join(dir, `${dut}.json`);
  }

  load(): DutStorageState {
    return (
      readJsonIfPresent<DutStorageState>(this.#path) ?? {
        dirty: false,
        lastJobId: '',
        lastImageSha256: '',
        lastFlashedAt: 0,
      }
    );
  }

  save(state: DutStorageState): void {
    writeJsonAtomic(this.#path, state);
  }
}
