import assert from 'node:assert/strict';
import path from 'node:path';
import { JigletError } from '../../protocol/src/errors.js';
import { resolveUsbDevice } from '../src/usb-match.js';
import { waitForDevice } from '../src/wait-for-device.js';
import { FakeDeviceTree } from './helpers/fake-device-tree.js';

const FTDI = { vid: '0403', pid: '6001' };
const BY_PATH_2 = 'pci-0000:00:14.0-usb-0:2:1.0';

/** Counts the handles a wait could leak (fs watchers, timers), once closed handles finished closing. */
async function watcherAndTimerCount(): Promise<number> {
  // A closed watcher leaves the list in libuv's close phase, i.e. after the current loop turn: two
  // setImmediates span one full turn. (Awaiting also lets mocha arm its own per-test timer first.)
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
  return process.getActiveResourcesInfo().filter((r) => r === 'FSEventWrap' || r === 'Timeout').length;
}

describe('usb-match', () => {
  let tree: FakeDeviceTree;
  let roots: { sysRoot: string; devRoot: string };

  beforeEach(() => {
    tree = new FakeDeviceTree();
    roots = { sysRoot: tree.sysRoot, devRoot: tree.devRoot };
    tree.addPlatformTty('ttyS0');
    tree.addUsbDevice('1-2', { ...FTDI, serial: 'A10K' });
    tree.addTty('1-2', 'ttyUSB0');
    tree.addUsbDevice('1-3', { ...FTDI, serial: 'B20Z' });
    tree.addTty('1-3', 'ttyUSB1');
  });
  afterEach(() => tree.remove());

  describe('resolveUsbDevice', () => {
    it('finds a tty by VID:PID and serial, with its udev links', async () => {
      tree.addNode('ttyUSB0');
      tree.addNode('ttyUSB1');
      tree.addLink('serial/by-id', 'usb-FTDI_FT232R_USB_UART_A10K-if00-port0', 'ttyUSB0');
      tree.addLink('serial/by-path', `${BY_PATH_2}-port0`, 'ttyUSB0');
      const device = await resolveUsbDevice({ ...FTDI, serial: 'A10K' }, roots);
      assert.deepEqual(device, {
        name: 'ttyUSB0',
        devPath: path.join(tree.devRoot, 'ttyUSB0'),
        links: [
          path.join(tree.devRoot, 'serial/by-id/usb-FTDI_FT232R_USB_UART_A10K-if00-port0'),
          path.join(tree.devRoot, `serial/by-path/${BY_PATH_2}-port0`),
        ],
      });
      assert.equal((await resolveUsbDevice({ serial: 'B20Z' }, roots))?.name, 'ttyUSB1');
    });

    it('compares VID/PID without regard to case and ignores non-USB ttys', async () => {
      tree.addNode('ttyUSB1');
      assert.equal(
        (await resolveUsbDevice({ vid: '0403', pid: '6001', serial: 'B20Z' }, roots))?.name,
        'ttyUSB1',
      );
      assert.equal(await resolveUsbDevice({ vid: '0403', pid: '6015' }, roots), undefined);
    });

    it('finds a tty by its by-path name, with or without the "-port0" suffix, and not a longer port path', async () => {
      tree.addNode('ttyUSB0');
      tree.addNode('ttyUSB1');
      tree.addLink('serial/by-path', `${BY_PATH_2}-port0`, 'ttyUSB0');
      tree.addLink('serial/by-path', 'pci-0000:00:14.0-usb-0:2.1:1.0-port0', 'ttyUSB1');
      assert.equal((await resolveUsbDevice({ byPath: BY_PATH_2 }, roots))?.name, 'ttyUSB0');
      assert.equal((await resolveUsbDevice({ byPath: `${BY_PATH_2}-port0` }, roots))?.name, 'ttyUSB0');
      assert.equal(await resolveUsbDevice({ byPath: 'pci-0000:00:14.0-usb-0:2' }, roots), undefined);
    });

    it('refuses to guess between several matching devices', async () => {
      tree.addNode('ttyUSB0');
      tree.addNode('ttyUSB1');
      await assert.rejects(resolveUsbDevice(FTDI, roots), (error: unknown) => {
        assert.ok(error instanceof JigletError);
        assert.equal(error.code, 'JIGLET_E_FAILED_PRECONDITION');
        assert.match(error.message, /vid=0403 pid=6001 matches several devices \(ttyUSB0, ttyUSB1\)/);
        return true;
      });
    });

    it('reports nothing while sysfs knows the device but its /dev node does not exist yet', async () => {
      assert.equal(await resolveUsbDevice({ serial: 'A10K' }, roots), undefined);
    });

    it('finds a USB disk (not its partitions) by serial', async () => {
      tree.addUsbDevice('1-4', { vid: '0bda', pid: '0109', serial: 'SDMUX1' });
      tree.addDisk('1-4', 'sda');
      tree.addNode('sda');
      tree.addNode('sda1');
      tree.addLink('disk/by-path', `pci-0000:00:14.0-usb-0:4:1.0-scsi-0:0:0:0`, 'sda');
      const device = await resolveUsbDevice({ serial: 'SDMUX1' }, { ...roots, kind: 'block' });
      assert.equal(device?.name, 'sda');
      assert.deepEqual(device?.links, [
        path.join(tree.devRoot, 'disk/by-path/pci-0000:00:14.0-usb-0:4:1.0-scsi-0:0:0:0'),
      ]);
      assert.equal(await resolveUsbDevice({ serial: 'SDMUX1' }, roots), undefined, 'a disk is not a tty');
    });
  });

  describe('waitForDevice', () => {
    it('resolves at once when the device is already there', async () => {
      tree.addNode('ttyUSB0');
      const device = await waitForDevice({ serial: 'A10K' }, { ...roots, timeoutMs: 5000 });
      assert.equal(device.name, 'ttyUSB0');
    });

    it('resolves when the node appears, woken by the /dev watch (the re-check is far too slow to do it)', async () => {
      const before = await watcherAndTimerCount();
      const device = await waitForDevice(
        { ...FTDI, serial: 'A10K' },
        { ...roots, timeoutMs: 20_000, recheckMs: 60_000, onPending: () => tree.addNode('ttyUSB0') },
      );
      assert.equal(device.devPath, path.join(tree.devRoot, 'ttyUSB0'));
      assert.equal(await watcherAndTimerCount(), before, 'no watcher or timer left behind');
    });

    it('resolves when a by-path link appears in a /dev/serial that did not exist when the wait began', async () => {
      tree.addNode('ttyUSB0');
      const device = await waitForDevice(
        { byPath: BY_PATH_2 },
        {
          ...roots,
          timeoutMs: 20_000,
          recheckMs: 60_000,
          onPending: () => tree.addLink('serial/by-path', `${BY_PATH_2}-port0`, 'ttyUSB0'),
        },
      );
      assert.equal(device.name, 'ttyUSB0');
    });

    it('rejects with JIGLET_E_DEADLINE_EXCEEDED naming what it waited for, and leaves nothing behind', async () => {
      const before = await watcherAndTimerCount();
      let pending = 0;
      await assert.rejects(
        waitForDevice(
          { ...FTDI, serial: 'NOPE' },
          { ...roots, timeoutMs: 150, recheckMs: 20, onPending: () => pending++ },
        ),
        (error: unknown) => {
          assert.ok(error instanceof JigletError);
          assert.equal(error.code, 'JIGLET_E_DEADLINE_EXCEEDED');
          assert.match(error.message, /no tty vid=0403 pid=6001 serial=NOPE appeared under .* within 150 ms/);
          return true;
        },
      );
      assert.equal(pending, 1, 'onPending is called once');
      assert.equal(await watcherAndTimerCount(), before, 'no watcher or timer left behind');
    });

    it('rejects at once when the match is ambiguous', async () => {
      tree.addNode('ttyUSB0');
      tree.addNode('ttyUSB1');
      await assert.rejects(waitForDevice(FTDI, { ...roots, timeoutMs: 20_000 }), {
        code: 'JIGLET_E_FAILED_PRECONDITION',
      });
    });
  });
});
