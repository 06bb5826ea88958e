/**
 * Byte encoding of the common "USBRelay" HID boards (V-USB firmware, VID 0x16c0 PID 0x05df,
 * product string "USBRelayN"). Pure functions, so tests check exact bytes without hardware.
 * Protocol as implemented by pavel-a/usb-relay-hid and darrylb123/usbrelay.
 */
import { JigletError } from '../../protocol/src/errors.js';

/** USB vendor id shared by all these boards (V-USB's shared id). */
export const HID_RELAY_VID = 0x16c0;
/** USB product id shared by all these boards. */
export const HID_RELAY_PID = 0x05df;
/** Length of the feature report, both directions (report id 0 is not sent). */
export const HID_RELAY_REPORT_LENGTH = 8;

/** The setup fields of a USB control transfer. */
export interface ControlSetup {
  /** Direction, type and recipient. */
  bmRequestType: number;
  /** The request code. */
  bRequest: number;
  /** Request-specific value. */
  wValue: number;
  /** Request-specific index (the interface number here). */
  wIndex: number;
}

// HID class requests to interface 0; wValue = report type (3 = feature) << 8 | report id (0).
/** HID SET_REPORT of feature report 0: host → device, class, interface. */
export const SET_FEATURE_REPORT: ControlSetup = {
  bmRequestType: 0x21,
  bRequest: 0x09,
  wValue: 0x0300,
  wIndex: 0,
};
/** HID GET_REPORT of feature report 0: device → host, class, interface. */
export const GET_FEATURE_REPORT: ControlSetup = {
  bmRequestType: 0xa1,
  bRequest: 0x01,
  wValue: 0x0300,
  wIndex: 0,
};

const CMD_ON = 0xff;
const CMD_OFF = 0xfd;
const CMD_ALL_ON = 0xfe;
const CMD_ALL_OFF = 0xfc;

/** The report that switches relay `relay` (1-based). */
export function relayCommand(relay: number, on: boolean): Buffer {
  if (!Number.isInteger(relay) || relay < 1 || relay > 8) {
    throw new JigletError('JIGLET_E_INVALID_ARGUMENT', `relay number must be 1..8, got ${relay}`);
  }
  const report = Buffer.alloc(HID_RELAY_REPORT_LENGTH);
  report[0] = on ? CMD_ON : CMD_OFF;
  report[1] = relay;
  return report;
}

/** The report that switches every relay of a board. */
export function allRelaysCommand(on: boolean): Buffer {
  const report = Buffer.alloc(HID_RELAY_REPORT_LENGTH);
  report[0] = on ? CMD_ALL_ON : CMD_ALL_OFF;
  return report;
}

/** What a board's feature report says. */
export interface RelayBoardState {
  /** The board's 5-character serial (bytes 0–4; not the USB serial descriptor, which these boards lack). */
  serial: string;
  /** Relay states, bit n-1 = relay n. */
  states: number;
}

/** Decodes the 8-byte feature report: bytes 0–4 serial, byte 7 relay bitmask. */
export function parseRelayReport(report: Buffer): RelayBoardState {
  if (report.length < HID_RELAY_REPORT_LENGTH) {
    throw new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `USB HID relay: expected an ${HID_RELAY_REPORT_LENGTH}-byte feature report, got ${report.length} bytes (${report.toString('hex')})`,
    );
  }
  // The serial is ASCII padded with NULs on boards whose serial was never set.
  const serial = report.subarray(0, 5).toString('latin1').replace(/\0+$/, '');
  return { serial, states: report[7]! };
}

/** True if relay `relay` (1-based) is on in a state bitmask. */
export function isRelayOn(states: number, relay: number): boolean {
  return (states & (1 << (relay - 1))) !== 0;
}

/** The number of relays from the product string ("USBRelay2" → 2), or undefined for another product. */
export function relayCountFromProduct(product: string | undefined): number | undefined {
  const match = /^USBRelay([1-8])$/.exec(product ?? '');
  return match ? Number(match[1]) : undefined;
}
