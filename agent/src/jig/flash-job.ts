/**
 * One flash as a `jig-driver flash` job owned by the caller: the job switches the mux to the
 * host, waits for the block device, writes and verifies the image and switches back, printing
 * JSON progress lines that jigctl turns into a progress bar.
 */
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JigDriverCommand } from './jig-driver-command.js';

/** Longest a flash may run before the job timeout stops it (a large image on a slow SD card). */
export const FLASH_TIMEOUT_MS = 4 * 3600 * 1000;

/** The job that flashes `imagePath` onto the DUT's storage. */
export function flashJobSpec(opts: {
  jigDriver: JigDriverCommand;
  dut: string;
  storage: unknown;
  imagePath: string;
  bmapPath?: string;
  verify: boolean;
}): JobSpecInput {
  return {
    command: opts.jigDriver.command,
    args: [
      ...opts.jigDriver.args,
      'flash',
      '--dut',
      opts.dut,
      '--storage',
      JSON.stringify(opts.storage),
      '--image',
      opts.imagePath,
      ...(opts.bmapPath ? ['--bmap', opts.bmapPath] : []),
      ...(opts.verify ? [] : ['--no-verify']),
    ],
    env: {},
    cwd: '',
    dut: opts.dut,
    limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
    timeoutMs: FLASH_TIMEOUT_MS,
    stdin: false,
  };
}
