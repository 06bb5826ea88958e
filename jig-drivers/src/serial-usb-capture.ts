/**
 * `jig-driver serial --usb`: a serial console described by what is stable about its USB adapter
 * (VID:PID, serial number, port) instead of a `ttyUSB<n>` name that changes with plug order.
 * Waits for the adapter to appear (the DUT may power it), then captures it like a fixed path.
 */
import path from 'node:path';
import { JigletError } from '../../protocol/src/errors.js';
import { DEFAULT_REOPEN_TIMEOUT_MS, runSerialCapture, type SerialCaptureOptions } from './serial-capture.js';
import { encodeEvent, type SerialEventName } from './serial-framing.js';
import { type DeviceRoots, describeMatch, type ResolvedDevice, type UsbMatch } from './usb-match.js';
import { waitForDevice } from './wait-for-device.js';

/**
 * Length of one waitForDevice call. It cannot be cancelled, so the wait runs in slices and a
 * stop (SIGTERM) takes effect at the end of the current one; the device itself is still noticed
 * at once through waitForDevice's /dev watch.
 */
export const USB_WAIT_SLICE_MS = 1000;

/** What to capture (a USB match instead of a path), where to put it, and when to stop. */
export interface UsbSerialCaptureOptions extends Omit<SerialCaptureOptions, 'path'> {
  /** The adapter to find; exactly one device may match. */
  match: UsbMatch;
  /** sysfs and /dev roots (tests point these at a fake tree). */
  roots?: DeviceRoots;
}

/**
 * The path to capture for `device`: a udev link survives re-enumeration (ttyUSB0 coming back as
 * ttyUSB1 after a power cycle), the kernel name does not. by-id names the adapter wherever it is
 * plugged, by-path names the port; the one matching how the config identifies it comes first.
 */
export function capturePath(device: ResolvedDevice, match: UsbMatch): string {
  const order = match.byPath !== undefined ? ['by-path', 'by-id'] : ['by-id', 'by-path'];
  for (const dir of order) {
    const link = device.links.find((candidate) => path.basename(path.dirname(candidate)) === dir);
    if (link) return link;
  }
  return device.devPath;
}

/**
 * Waits for the device, then captures it with runSerialCapture (which handles its vanishing and
 * return) until `signal` aborts. While waiting, a `waiting <match> <n> ms` event is written at
 * once and then every reopen period, and console input is dropped (recorded as `dropped-input`),
 * as while a port is gone. Rejects if the match is ambiguous or the device tree cannot be read.
 */
export async function runUsbSerialCapture(opts: UsbSerialCaptureOptions): Promise<void> {
  const { match, roots, ...captureOpts } = opts;
  const { out, input, signal } = captureOpts;
  const now = opts.now ?? Date.now;
  const periodMs = opts.reopen?.timeoutMs ?? DEFAULT_REOPEN_TIMEOUT_MS;
  const event = (name: SerialEventName, detail: string): void => {
    out.write(encodeEvent(now(), name, detail));
  };
  // Keystrokes typed before the console exists must not reach the DUT later (see runSerialCapture).
  const dropInput = (chunk: Buffer | string): void =>
    event('dropped-input', String(Buffer.byteLength(chunk)));
  input?.on('data', dropInput);
  let periods = 0;
  const what = describeMatch(match);
  // An absent adapter is said at once (as runSerialCapture does for an absent path), so a reader
  // of the log tells "waiting for the adapter" from "starting"; then once per period.
  // The periods count from the announcement, so `0 ms` always comes first, however long a loaded
  // host takes over the first look at the device tree.
  let waiting: NodeJS.Timeout | undefined;
  const announce = (): void => {
    if (waiting !== undefined) return;
    event('waiting', `${what} 0 ms`);
    waiting = setInterval(() => {
      // A stop lands mid-slice: the log must not claim a wait that is already over.
      if (!signal.aborted) event('waiting', `${what} ${++periods * periodMs} ms`);
    }, periodMs);
  };
  let ttyPath: string | undefined;
  try {
    while (!signal.aborted && ttyPath === undefined) {
      try {
        const device = await waitForDevice(match, {
          ...roots,
          kind: 'tty',
          timeoutMs: USB_WAIT_SLICE_MS,
          onPending: announce,
        });
        ttyPath = capturePath(device, match);
      } catch (error) {
        if (!(error instanceof JigletError && error.code === 'JIGLET_E_DEADLINE_EXCEEDED')) throw error;
      }
    }
  } finally {
    clearInterval(waiting);
    if (ttyPath === undefined) {
      input?.removeListener('data', dropInput);
      input?.pause(); // as runSerialCapture leaves it: unread keystrokes stay in the stream
    }
  }
  if (ttyPath === undefined) return;
  const capture = runSerialCapture({ ...captureOpts, path: ttyPath });
  // runSerialCapture attached its input listener synchronously: the hand-over loses no byte.
  input?.removeListener('data', dropInput);
  await capture;
}
