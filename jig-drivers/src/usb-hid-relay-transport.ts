/**
 * The USB access of the HID relay driver, behind a two-call interface so that the driver's logic
 * is tested against a fake (this machine, like CI, has no USB) and only this file touches libusb.
 */
import type { Device } from 'usb';
import { failedPrecondition, JigletError } from '../../protocol/src/errors.js';
import { type ControlSetup, HID_RELAY_PID, HID_RELAY_VID } from './usb-hid-relay-protocol.js';

/** One opened relay board. */
export interface HidRelayHandle {
  /** The USB product string, e.g. "USBRelay2". */
  readonly product: string | undefined;
  /** A host → device control transfer carrying `data`. */
  controlOut(setup: ControlSetup, data: Buffer): Promise<void>;
  /** A device → host control transfer of up to `length` bytes. */
  controlIn(setup: ControlSetup, length: number): Promise<Buffer>;
  /** Releases the board (and gives it back to the kernel's HID driver). */
  close(): Promise<void>;
}

/** Finds and opens boards. */
export interface HidRelayTransport {
  /** Opens every attached relay board; each transfer is limited to `timeoutMs`. */
  openAll(timeoutMs: number): Promise<HidRelayHandle[]>;
}

/** Wraps a libusb failure with what we were doing; EACCES is the usual one and has a known fix. */
function usbError(action: string, device: Device, error: unknown): JigletError {
  const where = `USB HID relay at bus ${device.busNumber} address ${device.deviceAddress}`;
  const message = error instanceof Error ? error.message : String(error);
  if (/ACCESS/.test(message)) {
    return failedPrecondition(
      `${where}: ${action}: ${message}; give the agent's user access with a udev rule`,
    );
  }
  return new JigletError('JIGLET_E_UNAVAILABLE', `${where}: ${action}: ${message}`, { cause: error });
}

function transfer(
  device: Device,
  setup: ControlSetup,
  dataOrLength: Buffer | number,
): Promise<Buffer | number> {
  return new Promise((resolve, reject) => {
    device.controlTransfer(
      setup.bmRequestType,
      setup.bRequest,
      setup.wValue,
      setup.wIndex,
      dataOrLength,
      (error, data) => (error ? reject(usbError('control transfer', device, error)) : resolve(data ?? 0)),
    );
  });
}

function productString(device: Device): Promise<string | undefined> {
  const index = device.deviceDescriptor.iProduct;
  if (index === 0) return Promise.resolve(undefined);
  return new Promise((resolve, reject) =>
    device.getStringDescriptor(index, (error, value) =>
      error ? reject(usbError('read product string', device, error)) : resolve(value),
    ),
  );
}

async function openBoard(device: Device, timeoutMs: number): Promise<HidRelayHandle> {
  try {
    device.open();
  } catch (error) {
    throw usbError('open', device, error);
  }
  device.timeout = timeoutMs;
  let product: string | undefined;
  try {
    // A standard request to the device itself: no interface claim needed yet.
    product = await productString(device);
  } catch (error) {
    device.close();
    throw error;
  }
  const iface = device.interface(0);
  // usbhid owns the interface; Linux refuses class requests to an interface another driver holds.
  const detached = iface.isKernelDriverActive();
  try {
    if (detached) iface.detachKernelDriver();
    iface.claim();
  } catch (error) {
    device.close();
    throw usbError('claim interface 0', device, error);
  }
  return {
    product,
    controlOut: async (setup, data) => {
      await transfer(device, setup, data);
    },
    controlIn: async (setup, length) => {
      const data = await transfer(device, setup, length);
      return Buffer.isBuffer(data) ? data : Buffer.alloc(0);
    },
    close: async () => {
      await iface.releaseAsync();
      // Hand the board back so hidraw tools (usbrelay) keep working between our actions.
      if (detached) iface.attachKernelDriver();
      device.close();
    },
  };
}

/** The real transport, through the `usb` package (libusb). Loaded lazily: it is a native addon. */
export const libusbHidRelayTransport: HidRelayTransport = {
  async openAll(timeoutMs) {
    const { getDeviceList } = await import('usb');
    const boards = getDeviceList().filter(
      (d) => d.deviceDescriptor.idVendor === HID_RELAY_VID && d.deviceDescriptor.idProduct === HID_RELAY_PID,
    );
    const handles: HidRelayHandle[] = [];
    try {
      for (const device of boards) handles.push(await openBoard(device, timeoutMs));
    } catch (error) {
      // The open failure is what to report; boards opened before it are closed best-effort, and
      // one failing to close too is recorded as the error's cause rather than hiding the first.
      const closing = await Promise.allSettled(handles.map((handle) => handle.close()));
      const closeFailure = closing.find((result) => result.status === 'rejected');
      if (closeFailure && error instanceof Error && error.cause === undefined)
        error.cause = closeFailure.reason;
      throw error;
    }
    return handles;
  },
};

/** Closes every handle; the first close failure is thrown after all were tried. */
export async function closeAll(handles: readonly HidRelayHandle[]): Promise<void> {
  const results = await Promise.allSettled(handles.map((handle) => handle.close()));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
}
