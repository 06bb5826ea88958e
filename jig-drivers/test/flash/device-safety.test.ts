import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { openTarget } from '../../src/flash/block-writer.js';
import { checkFlashTarget } from '../../src/flash/device-safety.js';
import { FakeBlockTree } from './helpers/fake-block-tree.js';
import { LoopDevice } from './helpers/loop-device.js';

/** Expects a JIGLET_E_FAILED_PRECONDITION refusal whose message matches `pattern`. */
function refused(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof JigletError, String(err));
    assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(err.message, pattern);
    return true;
  };
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('flash device safety', () => {
  let dir: string;
  let loop: LoopDevice;
  let dev: string; // the real loop device's "major:minor"

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-safety-'));
    loop = new LoopDevice(path.join(dir, 'card.bin'), 8 * 1024 * 1024);
    dev = readFileSync(`/sys/class/block/${loop.name}/dev`, 'utf8').trim();
  });

  after(() => {
    loop.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('against a described host (fake /proc and /sys)', () => {
    let tree: FakeBlockTree;
    const check = (target = loop.device, allowFile = false) =>
      checkFlashTarget(target, { procRoot: tree.procRoot, sysRoot: tree.sysRoot, allowFile });

    beforeEach(() => {
      tree = new FakeBlockTree();
      tree.addDisk(loop.name, dev, 16384);
    });

    afterEach(() => tree.remove());

    it('accepts an unused disk and reports its capacity', async () => {
      tree.addDisk('sda', '8:0');
      tree.addPartition('sda', 'sda1', '8:1');
      tree.addMount('8:1', '/', '/dev/sda1');
      assert.deepEqual(await check(), { path: loop.device, kind: 'block', sizeBytes: 16384 * 512 });
    });

    it('refuses a disk whose partition is mounted, also through a /dev/disk/by-id style link', async () => {
      tree.addPartition(loop.name, `${loop.name}p1`, '259:7');
      tree.addMount('259:7', '/media/pi/my card', '/dev/somewhere-else');
      const link = path.join(dir, 'usb-Generic_SD_Reader-0:0');
      symlinkSync(loop.device, link);
      await assert.rejects(
        check(link),
        refused(
          new RegExp(
            `^refusing to flash ${escapeRegExp(link)}: partition ${loop.name}p1 of ${loop.name} is mounted at /media/pi/my card$`,
          ),
        ),
      );
    });

    it('refuses a disk under an LVM/dm device that backs the root filesystem', async () => {
      tree.addPartition(loop.name, `${loop.name}p2`, '259:8', 2);
      tree.addHolder(`${loop.name}p2`, 'dm-0', '254:0');
      tree.addMount('254:0', '/', '/dev/mapper/vg-root');
      await assert.rejects(
        check(),
        refused(
          new RegExp(
            `dm-0 \\(LVM, RAID or dm-crypt on ${loop.name}p2\\) backs the host's root filesystem \\(/\\)`,
          ),
        ),
      );
    });

    it('matches a mount by its source name when the device number is anonymous (btrfs)', async () => {
      tree.addMount('0:45', '/srv', loop.device, 'btrfs');
      await assert.rejects(check(), refused(/: it is mounted at \/srv$/));
    });

    it('refuses active swap, a holder nobody mounted, and a read-only card', async () => {
      tree.addPartition(loop.name, `${loop.name}p3`, '259:9', 3);
      tree.addSwap(`/dev/${loop.name}p3`);
      await assert.rejects(
        check(),
        refused(new RegExp(`partition ${loop.name}p3 of ${loop.name} is in use as swap`)),
      );

      tree.remove();
      tree = new FakeBlockTree();
      tree.addDisk(loop.name, dev);
      tree.addHolder(loop.name, 'md0', '9:0');
      await assert.rejects(check(), refused(/it is held by md0$/));

      tree.remove();
      tree = new FakeBlockTree();
      tree.addDisk(loop.name, dev);
      tree.setReadOnly(loop.name);
      await assert.rejects(check(), refused(/read-only \(a card with its write-protect switch on\?\)/));
    });

    it('judges a partition target together with the rest of its disk', async () => {
      // Describe the real loop node as partition 2 of a disk whose partition 1 is the root fs.
      tree.remove();
      tree = new FakeBlockTree();
      tree.addDisk('sdz', '8:240');
      tree.addPartition('sdz', 'sdz1', '8:241');
      tree.addPartition('sdz', loop.name, dev, 2);
      tree.addMount('8:241', '/', '/dev/sdz1');
      await assert.rejects(check(), refused(/partition sdz1 of sdz backs the host's root filesystem/));
    });

    it('refuses a device sysfs does not know, since nothing about it can be checked', async () => {
      tree.remove();
      tree = new FakeBlockTree();
      await assert.rejects(check(), refused(/it has no sysfs entry/));
    });

    it('refuses files unless allowed, and a file that backs a loop device even then', async () => {
      const file = path.join(dir, 'disk.img');
      writeFileSync(file, Buffer.alloc(4096));
      await assert.rejects(check(file), refused(/it is a regular file, not a block device/));
      assert.deepEqual(await check(file, true), { path: realpathSync(file), kind: 'file', sizeBytes: null });
      // A described loop device other than the real one this suite attached (which may be loop9
      // itself on a host whose lower loop devices are taken).
      const other = loop.name === 'loop9' ? 'loop8' : 'loop9';
      tree.addDisk(other, `7:${other.slice(4)}`);
      tree.setBackingFile(other, realpathSync(file));
      await assert.rejects(
        check(file, true),
        refused(new RegExp(`it backs /dev/${other}; detach the loop device first$`)),
      );
    });

    it('refuses what is neither a disk nor a file, and what does not exist', async () => {
      await assert.rejects(check('/dev/null'), refused(/neither a block device nor a regular file/));
      await assert.rejects(check(path.join(dir, 'no-such-card')), refused(/cannot be resolved \(ENOENT\)/));
    });
  });

  describe('on this machine', () => {
    it("refuses the host's root disk", async function () {
      const rootDev = statSync('/').dev;
      const number = `${(rootDev >> 8) & 0xfff}:${(rootDev & 0xff) | ((rootDev >> 12) & 0xfff00)}`;
      let sysDir: string;
      try {
        sysDir = realpathSync(`/sys/dev/block/${number}`);
      } catch {
        // An overlay or tmpfs root (a container) has no block device to protect here.
        return this.skip();
      }
      const isPartition = (() => {
        try {
          return statSync(path.join(sysDir, 'partition')).isFile();
        } catch {
          return false; // a whole disk has no partition attribute
        }
      })();
      const disk = `/dev/${path.basename(isPartition ? path.dirname(sysDir) : sysDir)}`;
      await assert.rejects(checkFlashTarget(disk), refused(/backs the host's root filesystem \(\/\)/));
    });

    it('refuses a mounted loop device, and the kernel refuses to open it exclusively', async () => {
      const mounted = new LoopDevice(path.join(dir, 'mounted.bin'), 8 * 1024 * 1024);
      try {
        mounted.mountExt2(path.join(dir, 'mnt'));
        await assert.rejects(
          checkFlashTarget(mounted.device),
          refused(
            new RegExp(
              `^refusing to flash ${mounted.device}: it is mounted at ${escapeRegExp(path.join(dir, 'mnt'))}$`,
            ),
          ),
        );
        await assert.rejects(
          openTarget({ path: mounted.device, kind: 'block' }),
          refused(/is in use \(mounted, swap, or held by another device\)/),
        );
      } finally {
        mounted.destroy();
      }
    });

    it('accepts an unmounted loop device', async () => {
      const target = await checkFlashTarget(loop.device);
      assert.deepEqual(target, { path: loop.device, kind: 'block', sizeBytes: 8 * 1024 * 1024 });
    });
  });
});
