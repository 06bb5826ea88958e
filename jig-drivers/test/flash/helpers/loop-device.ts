/**
 * Real loop block devices for the flash tests (we run as root): a backing file in a tmp dir,
 * attached with losetup, optionally formatted and mounted; `destroy` undoes all of it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** An attached loop device and its backing file. */
export class LoopDevice {
  /** The /dev/loopN path. */
  readonly device: string;
  private mountPoint: string | undefined;

  /** Creates `file` of `bytes` filled with `fill` and attaches it. */
  constructor(
    readonly file: string,
    readonly bytes: number,
    fill = 0xaa,
  ) {
    writeFileSync(file, Buffer.alloc(bytes, fill));
    this.device = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
  }

  /** The kernel name, e.g. loop3. */
  get name(): string {
    return path.basename(this.device);
  }

  /** Makes an ext2 filesystem on the device and mounts it under `dir`. */
  mountExt2(dir: string): void {
    execFileSync('mkfs.ext2', ['-q', '-F', this.device]);
    mkdirSync(dir, { recursive: true });
    execFileSync('mount', [this.device, dir]);
    this.mountPoint = dir;
  }

  /** Unmounts (if mounted) and detaches. */
  destroy(): void {
    if (this.mountPoint !== undefined) execFileSync('umount', [this.mountPoint]);
    this.mountPoint = undefined;
    execFileSync('losetup', ['-d', this.device]);
  }
}
