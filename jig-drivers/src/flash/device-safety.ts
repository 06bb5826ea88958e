/**
 * Refuses flash targets that would destroy something on the host: a disk that is mounted (itself,
 * a partition, or a device-mapper/md device stacked on it), that backs the root filesystem, swap or
 * a loop device, that is read-only, that is not a disk at all, or a regular file nobody allowed.
 * Reads /proc and sysfs; both roots are parameters so tests can describe any host in a tmp dir.
 * `openTarget`'s O_EXCL is the kernel's own second opinion on the same question.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { WriteTarget } from './block-writer.js';

/** Where procfs and sysfs are (tests point these into a tmp dir). */
export interface SafetyRoots {
  /** procfs mount point; default `/proc`. */
  procRoot?: string;
  /** sysfs mount point; default `/sys`. */
  sysRoot?: string;
}

/** Options of `checkFlashTarget`. */
export interface SafetyOptions extends SafetyRoots {
  /** Allow a regular file as the target (a virtual DUT's disk image). */
  allowFile?: boolean;
}

/** A target that passed the checks. */
export interface FlashTarget extends WriteTarget {
  /** Capacity in bytes (block devices), or null for a file, which grows as needed. */
  sizeBytes: number | null;
}

/** A block device and what hangs off it, by kernel name ("sdb", "sdb1", "dm-0"). */
interface DeviceTree {
  /** Kernel name → how it relates to the target, for messages ("partition sdb1 of sdb"). */
  names: Map<string, string>;
  /** "major:minor" → kernel name. */
  numbers: Map<string, string>;
}

/** The trimmed content of a sysfs/procfs file, or undefined when there is no such file. */
async function readText(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The kernel name of the block device `rdev`, via /sys/class/block/<name>/dev or /sys/dev/block. */
async function kernelName(sysRoot: string, resolved: string, rdev: number): Promise<string | undefined> {
  // glibc's dev_t layout: minor is split around the major's 12 bits.
  const number = `${(rdev >> 8) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
  const byName = path.basename(resolved);
  if ((await readText(path.join(sysRoot, 'class/block', byName, 'dev'))) === number) return byName;
  try {
    return path.basename(await realpath(path.join(sysRoot, 'dev/block', number)));
  } catch {
    return undefined; // not registered in sysfs: the caller refuses the target
  }
}

/** The target, its partitions, and everything stacked on any of them (holders), recursively. */
async function deviceTree(sysRoot: string, name: string, relation: string): Promise<DeviceTree> {
  const tree: DeviceTree = { names: new Map(), numbers: new Map() };
  const visit = async (device: string, how: string): Promise<void> => {
    if (tree.names.has(device)) return;
    tree.names.set(device, how);
    const dir = path.join(sysRoot, 'class/block', device);
    const number = await readText(path.join(dir, 'dev'));
    if (number !== undefined) tree.numbers.set(number, device);
    for (const entry of await listDir(dir)) {
      if ((await readText(path.join(dir, entry, 'partition'))) !== undefined) {
        await visit(entry, `partition ${entry} of ${device}`);
      }
    }
    for (const holder of await listDir(path.join(dir, 'holders'))) {
      await visit(holder, `${holder} (LVM, RAID or dm-crypt on ${device})`);
    }
  };
  await visit(name, relation);
  return tree;
}

/** Undoes mountinfo's octal escapes ("\040" for a space). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** Basename of `device` after following symlinks (/dev/disk/by-uuid/… → sda1); undefined for non-paths. */
async function deviceNameOf(device: string): Promise<string | undefined> {
  if (!device.startsWith('/')) return undefined;
  try {
    return path.basename(await realpath(device));
  } catch {
    return path.basename(device); // gone or not visible here: its name is still the best guess
  }
}

/**
 * Mounted filesystems on the tree. mountinfo rather than mounts: it carries the device number, which
 * still matches when the source is spelled differently ("/dev/root", a by-uuid link).
 */
async function mountsOn(procRoot: string, tree: DeviceTree): Promise<string[]> {
  const text = (await readText(path.join(procRoot, 'self/mountinfo'))) ?? '';
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    const number = fields[2];
    const mountPoint = fields[4];
    if (dash < 0 || number === undefined || mountPoint === undefined) continue;
    const source = unescapeMount(fields[dash + 2] ?? '');
    const device = tree.numbers.get(number) ?? (await deviceNameOf(source));
    const relation = device === undefined ? undefined : tree.names.get(device);
    if (relation === undefined) continue;
    const where = unescapeMount(mountPoint);
    found.push(
      where === '/'
        ? `${relation} backs the host's root filesystem (/)`
        : `${relation} is mounted at ${where}`,
    );
  }
  return found;
}

/** Active swap on the tree. */
async function swapsOn(procRoot: string, tree: DeviceTree): Promise<string[]> {
  const text = (await readText(path.join(procRoot, 'swaps'))) ?? '';
  const found: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const source = unescapeMount(line.split(/\s+/)[0] ?? '');
    const relation = tree.names.get((await deviceNameOf(source)) ?? '');
    if (relation !== undefined) found.push(`${relation} is in use as swap`);
  }
  return found;
}

/** Loop devices whose backing file is `resolved` or a device of the tree. */
async function loopsBackedBy(sysRoot: string, resolved: string, tree?: DeviceTree): Promise<string[]> {
  const found: string[] = [];
  for (const loop of await listDir(path.join(sysRoot, 'class/block'))) {
    const backing = await readText(path.join(sysRoot, 'class/block', loop, 'loop/backing_file'));
    if (backing === undefined) continue;
    const relation = tree?.names.get((await deviceNameOf(backing)) ?? '');
    if (backing === resolved) found.push(`it backs /dev/${loop}`);
    else if (relation !== undefined) found.push(`${relation} backs /dev/${loop}`);
  }
  return found;
}

function refuse(devicePath: string, problems: string[]): never {
  throw failedPrecondition(`refusing to flash ${devicePath}: ${problems.join('; ')}`);
}

/** Checks a block device target; see the module comment. */
async function checkBlockDevice(
  devicePath: string,
  resolved: string,
  rdev: number,
  roots: Required<SafetyRoots>,
): Promise<FlashTarget> {
  const name = await kernelName(roots.sysRoot, resolved, rdev);
  if (name === undefined)
    refuse(devicePath, ['it has no sysfs entry, so whether it is in use cannot be checked']);
  const sysDir = path.join(roots.sysRoot, 'class/block', name);
  const isPartition = (await readText(path.join(sysDir, 'partition'))) !== undefined;
  // A partition is judged with its whole disk: flashing next to the host's mounted root is no safer.
  let tree = await deviceTree(roots.sysRoot, name, 'it');
  if (isPartition) {
    const disk = path.basename(path.dirname(await realpath(sysDir)));
    const diskTree = await deviceTree(roots.sysRoot, disk, `its disk ${disk}`);
    // The target keeps its own wording ("it") inside its disk's tree.
    for (const [device, how] of tree.names) diskTree.names.set(device, how);
    tree = diskTree;
  }
  const problems = [
    ...(await mountsOn(roots.procRoot, tree)),
    ...(await swapsOn(roots.procRoot, tree)),
    ...(await loopsBackedBy(roots.sysRoot, resolved, tree)),
  ];
  const holders = await listDir(path.join(sysDir, 'holders'));
  if (holders.length > 0 && problems.length === 0) problems.push(`it is held by ${holders.join(', ')}`);
  if ((await readText(path.join(sysDir, 'ro'))) === '1') {
    problems.push('it is read-only (a card with its write-protect switch on?)');
  }
  if (problems.length > 0) refuse(devicePath, problems);
  const sectors = Number((await readText(path.join(sysDir, 'size'))) ?? Number.NaN);
  return { path: resolved, kind: 'block', sizeBytes: Number.isFinite(sectors) ? sectors * 512 : null };
}

/**
 * Resolves `devicePath` (symlinks such as /dev/disk/by-id/… included) and checks that flashing it
 * is safe. Throws JIGLET_E_FAILED_PRECONDITION "refusing to flash /dev/sda: partition sda1 of sda
 * backs the host's root filesystem (/)" and the like.
 */
export async function checkFlashTarget(
  devicePath: string,
  options: SafetyOptions = {},
): Promise<FlashTarget> {
  const roots = { procRoot: options.procRoot ?? '/proc', sysRoot: options.sysRoot ?? '/sys' };
  let resolved: string;
  try {
    resolved = await realpath(devicePath);
  } catch (err) {
    refuse(devicePath, [`it cannot be resolved (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  const stats = await stat(resolved);
  if (stats.isBlockDevice()) return checkBlockDevice(devicePath, resolved, stats.rdev, roots);
  if (!stats.isFile()) refuse(devicePath, ['it is neither a block device nor a regular file']);
  if (!options.allowFile) {
    refuse(devicePath, [
      'it is a regular file, not a block device (allow files explicitly to flash a disk image file)',
    ]);
  }
  const loops = await loopsBackedBy(roots.sysRoot, resolved);
  if (loops.length > 0) refuse(devicePath, [...loops, 'detach the loop device first']);
  return { path: resolved, kind: 'file', sizeBytes: null };
}
