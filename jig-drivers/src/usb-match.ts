/**
 * Finds the tty or block device of a USB gadget by what is stable about it — VID:PID, USB serial
 * number, or the port it is plugged into (by-path) — instead of a `ttyUSB<n>` name that changes with
 * plug order. Reads sysfs and udev's /dev links; both roots are parameters so tests use a fake tree.
 */
import { readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { failedPrecondition } from '../../protocol/src/errors.js';

/** What identifies a USB device; every given field must match. */
export interface UsbMatch {
  /** Vendor id, 4 hex digits ("0403"). */
  vid?: string;
  /** Product id, 4 hex digits ("6001"). */
  pid?: string;
  /** The USB serial number string ("A10K"). */
  serial?: string;
  /** A udev by-path name, e.g. "pci-0000:00:14.0-usb-0:2:1.0" (its "-port0"-style suffix may be left off). */
  byPath?: string;
}

// Unquoted, YAML reads 0403 as the number 403: the message says to quote it.
const HEX_ID_ERROR = 'expected 4 hex digits in quotes, such as "0403"';
const hexId = z.string({ error: HEX_ID_ERROR }).regex(/^[0-9a-fA-F]{4}$/, { error: HEX_ID_ERROR });

/** A USB serial match, as the jig description (and `jig-driver serial --usb`) accepts it. */
export const usbMatchSchema = z
  .strictObject({
    vid: hexId.optional(),
    pid: hexId.optional(),
    serial: z.string().min(1).optional(),
    byPath: z
      .string()
      .regex(/^[^/\s]+$/, { error: 'expected a /dev/serial/by-path name (no "/")' })
      .optional(),
  })
  .refine((usb) => Object.values(usb).some((v) => v !== undefined), {
    error: 'expected at least one of vid, serial, byPath',
  })
  .refine((usb) => usb.pid === undefined || usb.vid !== undefined, { error: 'pid needs vid', path: ['vid'] });

/** Which kind of device node is wanted. */
export type DeviceKind = 'tty' | 'block';

/** Where sysfs and /dev are (tests point these into a tmp dir). */
export interface DeviceRoots {
  /** sysfs mount point; default `/sys`. */
  sysRoot?: string;
  /** devtmpfs mount point; default `/dev`. */
  devRoot?: string;
}

/** Options of a lookup. */
export interface ResolveOptions extends DeviceRoots {
  /** tty (default) or block device. */
  kind?: DeviceKind;
}

/** A device node found for a match. */
export interface ResolvedDevice {
  /** Kernel name, e.g. `ttyUSB0` or `sda`. */
  name: string;
  /** The node, e.g. `/dev/ttyUSB0`. */
  devPath: string;
  /** udev's stable links to it (by-id, by-path), if any. */
  links: string[];
}

/** A one-line description of a match, for messages: `tty vid=0403 pid=6001 serial=A10K`. */
export function describeMatch(match: UsbMatch, kind: DeviceKind = 'tty'): string {
  const parts = Object.entries(match)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${value}`);
  return `${kind} ${parts.join(' ')}`;
}

/** Reads a sysfs attribute, or undefined when the device has none (interfaces have no idVendor). */
async function attribute(dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(path.join(dir, name), 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Lists a directory, treating a missing one as empty (/dev/serial only exists while a serial device does). */
async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** realpath, or undefined for a dangling or vanished link (devices come and go while we look). */
async function resolveLink(file: string): Promise<string | undefined> {
  try {
    return await realpath(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Real sysfs directories of the USB devices whose vid/pid/serial match. */
async function matchingUsbDevices(match: UsbMatch, sysRoot: string): Promise<string[]> {
  const base = path.join(sysRoot, 'bus/usb/devices');
  const found: string[] = [];
  for (const entry of await list(base)) {
    const dir = path.join(base, entry);
    const vid = await attribute(dir, 'idVendor');
    if (vid === undefined) continue; // an interface (1-2:1.0) or a hub port, not a device
    if (match.vid !== undefined && vid.toLowerCase() !== match.vid.toLowerCase()) continue;
    if (
      match.pid !== undefined &&
      (await attribute(dir, 'idProduct'))?.toLowerCase() !== match.pid.toLowerCase()
    )
      continue;
    if (match.serial !== undefined && (await attribute(dir, 'serial')) !== match.serial) continue;
    const real = await resolveLink(dir);
    if (real) found.push(real);
  }
  return found;
}

/** Link directories udev maintains for each kind. */
function linkDirs(kind: DeviceKind, devRoot: string): { byId: string; byPath: string } {
  const base = path.join(devRoot, kind === 'tty' ? 'serial' : 'disk');
  return { byId: path.join(base, 'by-id'), byPath: path.join(base, 'by-path') };
}

/** Symlinks in `dir` whose name passes `accept`, as (link → real target) pairs. */
async function links(
  dir: string,
  accept: (name: string) => boolean = () => true,
): Promise<[string, string][]> {
  const pairs: [string, string][] = [];
  for (const name of await list(dir)) {
    if (!accept(name)) continue;
    const target = await resolveLink(path.join(dir, name));
    if (target) pairs.push([path.join(dir, name), target]);
  }
  return pairs;
}

/**
 * Finds the device node for `match`, or undefined while none exists. Throws
 * JIGLET_E_FAILED_PRECONDITION when several match (e.g. a quad FTDI without byPath): guessing
 * would put one DUT's console on another's port.
 */
export async function resolveUsbDevice(
  match: UsbMatch,
  options: ResolveOptions = {},
): Promise<ResolvedDevice | undefined> {
  const { sysRoot = '/sys', devRoot = '/dev', kind = 'tty' } = options;
  const usbDirs = await matchingUsbDevices(match, sysRoot);
  const dirs = linkDirs(kind, devRoot);
  // udev names by-path links "<port path>-port0" (tty) or "<port path>-scsi-0:0:0:0" (disk); a
  // configured prefix must end at a "-" so "usb-0:2" cannot also pick "usb-0:2.1".
  const wanted = match.byPath;
  const byPathTargets =
    wanted === undefined
      ? undefined
      : new Set(
          (await links(dirs.byPath, (n) => n === wanted || n.startsWith(`${wanted}-`))).map(([, t]) => t),
        );
  const classDir = path.join(sysRoot, 'class', kind);
  const found: ResolvedDevice[] = [];
  for (const name of await list(classDir)) {
    // Whole disks only: partitions have no `device` link of their own, and flashing wants the disk.
    const device = await resolveLink(path.join(classDir, name, 'device'));
    if (device === undefined || !usbDirs.some((dir) => device.startsWith(`${dir}/`))) continue;
    const devPath = path.join(devRoot, name);
    const node = await resolveLink(devPath);
    if (node === undefined) continue; // sysfs knows it, udev/devtmpfs has not made the node yet
    if (byPathTargets && !byPathTargets.has(node)) continue;
    found.push({ name, devPath, links: [] });
  }
  if (found.length > 1) {
    const names = found.map((d) => d.name).join(', ');
    throw failedPrecondition(
      `${describeMatch(match, kind)} matches several devices (${names}); add byPath or serial`,
    );
  }
  const device = found[0];
  if (device) {
    const node = await resolveLink(device.devPath);
    const all = [...(await links(dirs.byId)), ...(await links(dirs.byPath))];
    device.links = all.filter(([, target]) => target === node).map(([link]) => link);
  }
  return device;
}
