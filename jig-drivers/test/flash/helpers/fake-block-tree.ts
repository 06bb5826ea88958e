/**
 * A fake /proc and /sys in a tmp dir describing block devices the way the kernel lays them out
 * (/sys/class/block/<name> → ../../devices/…/block/<disk>[/<partition>], with dev, size, ro,
 * partition, holders/ and loop/backing_file), plus /proc/self/mountinfo and /proc/swaps.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const DEVICES = 'devices/virtual/block';

/** A fake procfs + sysfs; mounts and swaps are appended as lines. */
export class FakeBlockTree {
  /** The tmp dir holding both roots. */
  readonly root = mkdtempSync(path.join(os.tmpdir(), 'jiglet-blocktree-'));
  /** The fake procfs root. */
  readonly procRoot = path.join(this.root, 'proc');
  /** The fake sysfs root. */
  readonly sysRoot = path.join(this.root, 'sys');
  private readonly mountLines: string[] = [];
  private readonly swapLines = ['Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority'];
  private nextMountId = 30;

  constructor() {
    mkdirSync(path.join(this.procRoot, 'self'), { recursive: true });
    mkdirSync(path.join(this.sysRoot, 'class/block'), { recursive: true });
    this.flush();
  }

  /** Adds a whole disk `name` with device number `dev` ("7:3") and `sectors` 512-byte sectors. */
  addDisk(name: string, dev: string, sectors = 2048): void {
    this.addNode(path.join(DEVICES, name), name, dev, sectors);
  }

  /** Adds partition `name` of `disk`. */
  addPartition(disk: string, name: string, dev: string, number = 1): void {
    this.addNode(path.join(DEVICES, disk, name), name, dev, 1024);
    writeFileSync(path.join(this.sysRoot, DEVICES, disk, name, 'partition'), `${number}\n`);
  }

  /** Adds a device-mapper device `name` stacked on `lower` (listed in lower's holders/). */
  addHolder(lower: string, name: string, dev: string): void {
    this.addNode(path.join(DEVICES, name), name, dev, 1024);
    symlinkSync(`../../${name}`, path.join(this.sysRoot, 'class/block', lower, 'holders', name));
  }

  /** Marks `name` read-only. */
  setReadOnly(name: string): void {
    writeFileSync(path.join(this.sysRoot, 'class/block', name, 'ro'), '1\n');
  }

  /** Makes loop device `name` (added with addDisk) report `file` as its backing file. */
  setBackingFile(name: string, file: string): void {
    mkdirSync(path.join(this.sysRoot, 'class/block', name, 'loop'), { recursive: true });
    writeFileSync(path.join(this.sysRoot, 'class/block', name, 'loop/backing_file'), `${file}\n`);
  }

  /** Adds a mountinfo line: device number `dev`, mount point (escaped as the kernel does), source. */
  addMount(dev: string, mountPoint: string, source: string, fstype = 'ext4'): void {
    const id = this.nextMountId++;
    const escaped = mountPoint.replace(/ /g, '\\040');
    this.mountLines.push(`${id} 1 ${dev} / ${escaped} rw,relatime shared:${id} - ${fstype} ${source} rw`);
    this.flush();
  }

  /** Adds a /proc/swaps line for `source`. */
  addSwap(source: string): void {
    this.swapLines.push(`${source}\t\t\t\tpartition\t1048572\t\t0\t\t-2`);
    this.flush();
  }

  /** Removes the tmp dir. */
  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  private addNode(devicePath: string, name: string, dev: string, sectors: number): void {
    const dir = path.join(this.sysRoot, devicePath);
    mkdirSync(path.join(dir, 'holders'), { recursive: true });
    writeFileSync(path.join(dir, 'dev'), `${dev}\n`);
    writeFileSync(path.join(dir, 'size'), `${sectors}\n`);
    writeFileSync(path.join(dir, 'ro'), '0\n');
    symlinkSync(path.join('../..', devicePath), path.join(this.sysRoot, 'class/block', name));
  }

  private flush(): void {
    writeFileSync(path.join(this.procRoot, 'self/mountinfo'), `${this.mountLines.join('\n')}\n`);
    writeFileSync(path.join(this.procRoot, 'swaps'), `${this.swapLines.join('\n')}\n`);
  }
}
