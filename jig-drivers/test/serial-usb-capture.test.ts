/**
 * Serial capture of a USB adapter found by its match: a fake sysfs + /dev whose device node is a
 * link to a real pty, so the wait, the choice of the stable path and the capture all run for real.
 */
import assert from 'node:assert/strict';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ownResourcesLeftBy } from '../../fixtures/test-support/own-resources.js';
import { JigletError } from '../../protocol/src/errors.js';
import { capturePath, runUsbSerialCapture } from '../src/serial-usb-capture.js';
import type { UsbMatch } from '../src/usb-match.js';
import { FakeDeviceTree } from './helpers/fake-device-tree.js';
import { openPtyPair, type PtyPair } from './helpers/pty-pair.js';
import { RecordSink } from './helpers/record-sink.js';

const FTDI = { vid: '0403', pid: '6001' };
const BY_ID = 'usb-FTDI_FT232R_USB_UART_A10K-if00-port0';
const BY_PATH = 'pci-0000:00:14.0-usb-0:2:1.0-port0';

describe('serial capture of a USB adapter', function () {
  this.timeout(30_000);
  let tree: FakeDeviceTree;
  let ptys: PtyPair[];
  let controller: AbortController;
  let sink: RecordSink;
  let clock: number;

  const start = (match: UsbMatch, input?: PassThrough): Promise<void> =>
    runUsbSerialCapture({
      match,
      roots: { sysRoot: tree.sysRoot, devRoot: tree.devRoot },
      baudRate: 115200,
      out: sink.stream,
      input,
      reopen: { timeoutMs: 50 },
      signal: controller.signal,
      now: () => ++clock,
    });
  const waitingEvents = (): string[] => sink.events().filter((e) => e.startsWith('waiting '));

  beforeEach(() => {
    tree = new FakeDeviceTree();
    tree.addUsbDevice('1-2', { ...FTDI, serial: 'A10K' });
    tree.addTty('1-2', 'ttyUSB0');
    ptys = [];
    controller = new AbortController();
    sink = new RecordSink();
    clock = 1_700_000_000_000;
  });
  afterEach(async () => {
    controller.abort();
    for (const pty of ptys) await pty.kill();
    tree.remove();
  });

  it('reports waiting until the adapter appears, then captures it through its by-id link', async () => {
    const pty = await openPtyPair();
    ptys.push(pty);
    const input = new PassThrough();
    const done = start({ vid: '0403', serial: 'A10K' }, input);
    await sink.until('two waiting events', () => waitingEvents().length >= 2);
    assert.deepEqual(waitingEvents().slice(0, 2), [
      'waiting tty vid=0403 serial=A10K 0 ms',
      'waiting tty vid=0403 serial=A10K 50 ms',
    ]);
    input.write('early');
    await sink.until('dropped input', () => sink.events().includes('dropped-input 5'));

    // udev's link first (dangling, so not yet a device), then the node: the adapter appears at once.
    tree.addLink('serial/by-id', BY_ID, 'ttyUSB0');
    symlinkSync(pty.slavePath, path.join(tree.devRoot, 'ttyUSB0'));
    const link = path.join(tree.devRoot, 'serial/by-id', BY_ID);
    await sink.until('open', () => sink.events().includes(`open ${link}`));

    const payload = Buffer.from('U-Boot\r\n\0\xff', 'latin1');
    pty.child.stdin.write(payload);
    await sink.until('the DUT bytes', () => sink.data().length >= payload.length);
    assert.ok(sink.data().equals(payload));
    input.write('typed');
    await pty.until('console bytes at the DUT', () => pty.received().length >= 5);
    assert.equal(pty.received().toString(), 'typed', 'input typed while waiting is not replayed');

    const names = sink.records.map((r) => (r.kind === 'chunk' ? 'chunk' : r.event));
    const opened = names.indexOf('open');
    assert.ok(
      names.slice(0, opened).every((name) => name === 'waiting' || name === 'dropped-input'),
      `before open: ${names.slice(0, opened)}`,
    );
    assert.deepEqual(names.slice(opened), ['open', 'flush', 'chunk']);
    controller.abort();
    await done;
    assert.equal(input.listenerCount('data'), 0);
  });

  it('stops cleanly while still waiting, leaving no listener, timer or watcher', async () => {
    const input = new PassThrough();
    const left = await ownResourcesLeftBy(async () => {
      const done = start({ serial: 'A10K' }, input);
      await sink.until('a waiting event', () => waitingEvents().length >= 1);
      controller.abort();
      await done;
    });
    assert.deepEqual(left, []);
    assert.equal(input.listenerCount('data'), 0);
    assert.equal(sink.events().filter((e) => !e.startsWith('waiting ')).length, 0, 'nothing but waiting');
  });

  it('fails with JIGLET_E_FAILED_PRECONDITION when the match is ambiguous', async () => {
    tree.addUsbDevice('1-3', { ...FTDI, serial: 'B20Z' });
    tree.addTty('1-3', 'ttyUSB1');
    tree.addNode('ttyUSB0');
    tree.addNode('ttyUSB1');
    const input = new PassThrough();
    await assert.rejects(start(FTDI, input), (error: unknown) => {
      assert.ok(error instanceof JigletError);
      assert.equal(error.code, 'JIGLET_E_FAILED_PRECONDITION');
      return true;
    });
    assert.equal(input.listenerCount('data'), 0);
  });

  describe('capturePath', () => {
    const device = {
      name: 'ttyUSB0',
      devPath: '/dev/ttyUSB0',
      links: [`/dev/serial/by-path/${BY_PATH}`, `/dev/serial/by-id/${BY_ID}`],
    };

    it('prefers by-id, or by-path when the match names the port', () => {
      assert.equal(capturePath(device, FTDI), `/dev/serial/by-id/${BY_ID}`);
      assert.equal(capturePath(device, { byPath: BY_PATH }), `/dev/serial/by-path/${BY_PATH}`);
    });

    it('falls back to the other link, then to the kernel node', () => {
      assert.equal(
        capturePath({ ...device, links: [`/dev/serial/by-path/${BY_PATH}`] }, FTDI),
        `/dev/serial/by-path/${BY_PATH}`,
      );
      assert.equal(capturePath({ ...device, links: [] }, { byPath: BY_PATH }), '/dev/ttyUSB0');
    });
  });
});
