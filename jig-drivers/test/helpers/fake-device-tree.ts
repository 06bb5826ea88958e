/**
 * A fake sysfs + /dev in a tmp dir, laid out like the kernel's (devices/…/usb1/1-2/1-2:1.0/ttyUSB0,
 * class/tty/ttyUSB0 → ../../devices/…, bus/usb/devices/1-2 → ../../../devices/…), with real symlinks.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const HOST = 'devices/pci0000:00/0000:00:14.0/usb1';

/** A fake device tree; every method creates the files and links the kernel and udev would. */
export class FakeDeviceTree {
  /** The tmp dir holding both roots. */
  readonly root = mkdtempSync(path.join(os.tmpdir(), 'jiglet-devtree-'));
  /** The fake sysfs root. */
  readonly sysRoot = path.join(this.root, 'sys');
  /** The fake /dev root. */
  readonly devRoot = path.join(this.root, 'dev');

  constructor() {
    mkdirSync(path.join(this.sysRoot, 'bus/usb/devices'), { recursive: true });
    mkdirSync(path.join(this.sysRoot, 'class/tty'), { recursive: true });
    mkdirSync(path.join(this.sysRoot, 'class/block'), { recursive: true });
    mkdirSync(this.devRoot, { recursive: true });
  }

  /** Adds a USB device at port path `port` (e.g. `1-2`) with one interface `<port>:1.0`. */
  addUsbDevice(port: string, ids: { vid: string; pid: string; serial?: string }): void {
    const dir = path.join(this.sysRoot, HOST, port);
    mkdirSync(path.join(dir, `${port}:1.0`), { recursive: true });
    writeFileSync(path.join(dir, 'idVendor'), `${ids.vid}\n`);
    writeFileSync(path.join(dir, 'idProduct'), `${ids.pid}\n`);
    if (ids.serial !== undefined) writeFileSync(path.join(dir, 'serial'), `${ids.serial}\n`);
    symlinkSync(`../../../${HOST}/${port}`, path.join(this.sysRoot, 'bus/usb/devices', port));
    // Interfaces are listed too, without idVendor: the matcher must skip them.
    symlinkSync(
      `../../../${HOST}/${port}/${port}:1.0`,
      path.join(this.sysRoot, 'bus/usb/devices', `${port}:1.0`),
    );
  }

  /** Adds a usb-serial tty (`ttyUSB<n>` layout) under `port`'s interface 0, in sysfs only. */
  addTty(port: string, name: string): void {
    const portDir = `${HOST}/${port}/${port}:1.0/${name}`;
    mkdirSync(path.join(this.sysRoot, portDir, 'tty', name), { recursive: true });
    symlinkSync(`../../${portDir}/tty/${name}`, path.join(this.sysRoot, 'class/tty', name));
    symlinkSync(`../../../${name}`, path.join(this.sysRoot, portDir, 'tty', name, 'device'));
  }

  /** Adds a non-USB tty (a platform UART), which must never match. */
  addPlatformTty(name: string): void {
    const dir = `devices/platform/serial8250/tty/${name}`;
    mkdirSync(path.join(this.sysRoot, dir), { recursive: true });
    symlinkSync(`../../${dir}`, path.join(this.sysRoot, 'class/tty', name));
    symlinkSync('../../../serial8250', path.join(this.sysRoot, dir, 'device'));
    this.addNode(name);
  }

  /** Adds a USB mass-storage disk `name` with one partition `<name>1` under `port`, in sysfs only. */
  addDisk(port: string, name: string): void {
    const scsi = `${HOST}/${port}/${port}:1.0/host0/target0:0:0/0:0:0:0`;
    const disk = `${scsi}/block/${name}`;
    mkdirSync(path.join(this.sysRoot, disk, `${name}1`), { recursive: true });
    writeFileSync(path.join(this.sysRoot, disk, `${name}1`, 'partition'), '1\n');
    symlinkSync('../..', path.join(this.sysRoot, disk, 'device'));
    symlinkSync(`../../${disk}`, path.join(this.sysRoot, 'class/block', name));
    symlinkSync(`../../${disk}/${name}1`, path.join(this.sysRoot, 'class/block', `${name}1`));
  }

  /** Creates the device node /dev/<name> (a plain file does here). */
  addNode(name: string): void {
    writeFileSync(path.join(this.devRoot, name), '');
  }

  /** Creates udev's link `<dir>/<link>` → `../../<name>` (dir e.g. `serial/by-path`). */
  addLink(dir: string, link: string, name: string): void {
    mkdirSync(path.join(this.devRoot, dir), { recursive: true });
    symlinkSync(`../../${name}`, path.join(this.devRoot, dir, link));
  }

  /** Removes the whole tree. */
  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
