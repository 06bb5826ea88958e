/**
 * One flash as a `jig-driver flash` job owned by the caller: the job switches the mux to the
 * host, waits for the block device, writes and verifies the image and switches back, printing
 * JSON progress lines that jigctl turns into a progress bar.
 */

import type { StorageConfig } from '../../../jig-drivers/src/jig-description.js';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import { driverConfigArg } from './driver-config-file.js';
import type { JigDriverCommand } from './jig-driver-command.js';

/** Longest a flash may run before the job timeout stops it (a large image on a slow SD card). */
export const FLASH_TIMEOUT_MS = 4 * 3600 * 1000;

/** The job that flashes `imagePath` onto the DUT's storage. */
export function flashJobSpec(opts: {
  jigDriver: JigDriverCommand;
  dut: string;
  storage: StorageConfig;
  imagePath: string;
  /** The image at imagePath is still being uploaded: its final size and SHA-256. */
  arriving?: { size: number; sha256: string };
  bmapPath?: string;
  verify: boolean;
  /** Where the mux config file goes (the agent's state directory). */
  stateDir: string;
}): JobSpecInput {
  return {
    command: opts.jigDriver.command,
    args: [
      ...(opts.jigDriver.flashArgs ?? []),
      ...opts.jigDriver.args,
      'flash',
      '--image',
      opts.imagePath,
      '--device',
      deviceOf(opts.dut, opts.storage),
      '--mux-json',
      driverConfigArg(opts.stateDir, `${opts.dut}-mux`, opts.storage.mux),
      '--device-timeout-ms',
      String(opts.storage.appearTimeoutMs),
      // The device comes from the jig description, which is what may be written: a declared disk
      // image file (a QEMU or virtual DUT's medium) is as legitimate as a block device.
      '--allow-file',
      ...(opts.bmapPath ? ['--bmap', opts.bmapPath] : []),
      ...(opts.arriving
        ? ['--arriving-size', String(opts.arriving.size), '--arriving-sha256', opts.arriving.sha256]
        : []),
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

/** The medium's path; a USB-matched card reader is found by its by-path link. */
function deviceOf(dut: string, storage: StorageConfig): string {
  if (storage.device.path) return storage.device.path;
  const byPath = storage.device.usb?.byPath;
  if (byPath) return `/dev/disk/by-path/${byPath}`;
  throw failedPrecondition(
    `DUT ${dut}: flashing needs storage.device.path or storage.device.usb.byPath (a stable link to the card reader)`,
  );
}
