import assert from 'node:assert/strict';
import { PowerRegistry } from '../src/power-registry.js';
import { createUsbHidRelayPowerDriver } from '../src/power-usb-hid-relay.js';
import {
  allRelaysCommand,
  type ControlSetup,
  GET_FEATURE_REPORT,
  isRelayOn,
  parseRelayReport,
  relayCommand,
  relayCountFromProduct,
  SET_FEATURE_REPORT,
} from '../src/usb-hid-relay-protocol.js';
import type { HidRelayHandle, HidRelayTransport } from '../src/usb-hid-relay-transport.js';

/** One control transfer as the board saw it. */
interface Transfer {
  setup: ControlSetup;
  data?: number[];
  length?: number;
}

/** A board that behaves like the V-USB firmware: commands change byte 7 of its feature report. */
class FakeBoard implements HidRelayHandle {
  readonly transfers: Transfer[] = [];
  closed = false;
  constructor(
    readonly serial: string,
    readonly product: string,
    public states = 0,
    private readonly obeys = true,
  ) {}

  async controlOut(setup: ControlSetup, data: Buffer): Promise<void> {
    this.transfers.push({ setup, data: [...data] });
    if (!this.obeys) return;
    const [command = 0, relay = 0] = data;
    if (command === 0xff) this.states |= 1 << (relay - 1);
    if (command === 0xfd) this.states &= ~(1 << (relay - 1));
  }

  async controlIn(setup: ControlSetup, length: number): Promise<Buffer> {
    this.transfers.push({ setup, length });
    const report = Buffer.alloc(8);
    report.write(this.serial, 0, 'latin1');
    report[7] = this.states;
    return report;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function registryWith(transport: HidRelayTransport): PowerRegistry {
  return new PowerRegistry().register(createUsbHidRelayPowerDriver(transport));
}

const GET = { setup: { bmRequestType: 0xa1, bRequest: 0x01, wValue: 0x0300, wIndex: 0 }, length: 8 };
const SET = (data: number[]) => ({
  setup: { bmRequestType: 0x21, bRequest: 0x09, wValue: 0x0300, wIndex: 0 },
  data,
});

describe('usb-hid-relay power driver', () => {
  describe('byte encoding', () => {
    it('encodes relay and all-relay commands as 8-byte feature reports', () => {
      assert.deepEqual([...relayCommand(1, true)], [0xff, 1, 0, 0, 0, 0, 0, 0]);
      assert.deepEqual([...relayCommand(2, false)], [0xfd, 2, 0, 0, 0, 0, 0, 0]);
      assert.deepEqual([...allRelaysCommand(true)], [0xfe, 0, 0, 0, 0, 0, 0, 0]);
      assert.deepEqual([...allRelaysCommand(false)], [0xfc, 0, 0, 0, 0, 0, 0, 0]);
      assert.throws(() => relayCommand(9, true), { code: 'JIGLET_E_INVALID_ARGUMENT' });
    });

    it('uses HID SET_REPORT / GET_REPORT of feature report 0 on interface 0', () => {
      assert.deepEqual(SET_FEATURE_REPORT, SET([]).setup);
      assert.deepEqual(GET_FEATURE_REPORT, GET.setup);
    });

    it('decodes the serial (bytes 0-4) and the relay bitmask (byte 7)', () => {
      const report = Buffer.from([0x51, 0x57, 0x45, 0x52, 0x54, 0, 0, 0b0000_0101]);
      assert.deepEqual(parseRelayReport(report), { serial: 'QWERT', states: 5 });
      assert.equal(parseRelayReport(Buffer.from([0x41, 0x42, 0, 0, 0, 0, 0, 0])).serial, 'AB');
      assert.ok(isRelayOn(5, 1) && !isRelayOn(5, 2) && isRelayOn(5, 3));
      assert.throws(() => parseRelayReport(Buffer.from([1, 2])), { code: 'JIGLET_E_UNAVAILABLE' });
      assert.equal(relayCountFromProduct('USBRelay2'), 2);
      assert.equal(relayCountFromProduct('Teensy'), undefined);
    });
  });

  it('switches relay 2 on with the exact transfers, reads it back, and closes the board', async () => {
    const board = new FakeBoard('QWERT', 'USBRelay2');
    const power = registryWith({ openAll: async () => [board] }).create(
      { driver: 'usb-hid-relay', relay: 2 },
      { dutName: 'rpi4-a' },
    );
    await power.on();
    assert.deepEqual(board.transfers, [GET, SET([0xff, 2, 0, 0, 0, 0, 0, 0]), GET]);
    assert.equal(board.states, 0b10);
    assert.ok(board.closed);
    assert.equal(await power.status(), 'on');
    await power.off();
    assert.deepEqual(board.transfers.slice(-2), [SET([0xfd, 2, 0, 0, 0, 0, 0, 0]), GET]);
    assert.equal(await power.status(), 'off');
  });

  it('picks the board by serial when several are attached, and closes all of them', async () => {
    const a = new FakeBoard('AAAAA', 'USBRelay4');
    const b = new FakeBoard('BBBBB', 'USBRelay4');
    const power = registryWith({ openAll: async () => [a, b] }).create(
      { driver: 'usb-hid-relay', relay: 3, serial: 'BBBBB' },
      { dutName: 'rpi4-a' },
    );
    await power.on();
    assert.equal(a.states, 0);
    assert.equal(b.states, 0b100);
    assert.ok(!a.transfers.some((t) => t.data), 'the other board got no command');
    assert.ok(a.closed && b.closed);
  });

  it('refuses to guess between several boards, and reports an unknown serial', async () => {
    const boards = () => [new FakeBoard('AAAAA', 'USBRelay2'), new FakeBoard('BBBBB', 'USBRelay2')];
    const registry = registryWith({ openAll: async () => boards() });
    await assert.rejects(registry.create({ driver: 'usb-hid-relay', relay: 1 }, { dutName: 'x' }).on(), {
      code: 'JIGLET_E_FAILED_PRECONDITION',
      message: /2 boards attached \("AAAAA", "BBBBB"\); set "serial"/,
    });
    await assert.rejects(
      registry.create({ driver: 'usb-hid-relay', relay: 1, serial: 'CCCCC' }, { dutName: 'x' }).on(),
      {
        code: 'JIGLET_E_NOT_FOUND',
        message: /no board with serial "CCCCC" \(attached: "AAAAA", "BBBBB"\)/,
      },
    );
  });

  it('refuses a relay number the board does not have', async () => {
    const board = new FakeBoard('QWERT', 'USBRelay2');
    const power = registryWith({ openAll: async () => [board] }).create(
      { driver: 'usb-hid-relay', relay: 3 },
      { dutName: 'x' },
    );
    await assert.rejects(power.on(), { code: 'JIGLET_E_FAILED_PRECONDITION', message: /has only 2 relays/ });
    assert.ok(board.closed);
  });

  it('notices a board that ignored the command', async () => {
    const board = new FakeBoard('QWERT', 'USBRelay1', 0, false);
    const power = registryWith({ openAll: async () => [board] }).create(
      { driver: 'usb-hid-relay', relay: 1 },
      { dutName: 'x' },
    );
    await assert.rejects(power.on(), { code: 'JIGLET_E_UNAVAILABLE', message: /relay did not switch on/ });
  });

  it('gives up at the deadline when the USB stack hangs', async () => {
    const power = registryWith({ openAll: () => new Promise(() => undefined) }).create(
      { driver: 'usb-hid-relay', relay: 1, timeoutMs: 100 },
      { dutName: 'x' },
    );
    await assert.rejects(power.status(), {
      code: 'JIGLET_E_DEADLINE_EXCEEDED',
      message: /USB HID relay 1 of x: no answer within 100 ms/,
    });
  });
});

describe('usb-hid-relay through libusb', () => {
  it('finds no board on a host without one', async function () {
    const { getDeviceList } = await import('usb');
    if (
      getDeviceList().some(
        (d) => d.deviceDescriptor.idVendor === 0x16c0 && d.deviceDescriptor.idProduct === 0x05df,
      )
    ) {
      this.skip(); // a real board is attached: this test is for hosts without one
    }
    const power = new PowerRegistry()
      .register(createUsbHidRelayPowerDriver())
      .create({ driver: 'usb-hid-relay', relay: 1 }, { dutName: 'x' });
    await assert.rejects(power.status(), {
      code: 'JIGLET_E_NOT_FOUND',
      message: /no USB HID relay board attached/,
    });
  });
});
