import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { JigletError } from '../../protocol/src/errors.js';
import { findDut, loadJigDescription, parseJigDescription } from '../src/jig-description.js';

const LAB1 = fileURLToPath(new URL('../../fixtures/jigs/lab1.yaml', import.meta.url));

/** The problem lines of a description that must fail to parse. */
function problems(yaml: string): string[] {
  try {
    parseJigDescription(yaml, 'lab.yaml');
  } catch (error) {
    assert.ok(error instanceof JigletError, String(error));
    assert.equal(error.code, 'JIGLET_E_INVALID_ARGUMENT');
    return error.message.split('\n');
  }
  assert.fail('the description was accepted');
}

/** A one-DUT description with `storage` as given (YAML flow text). */
function withStorage(storage: string): string {
  return `duts:\n  - name: rpi4-a\n    storage: ${storage}\n`;
}

describe('jig description: storage', () => {
  it('loads the sample jig: each mux checked by its own driver, defaults filled in', async () => {
    const jig = await loadJigDescription(LAB1);
    assert.deepEqual(findDut(jig, 'bbb-1').storage, {
      mux: { driver: 'sdwire', serial: 'sdw-bbb-1', timeoutMs: 10_000 },
      device: { usb: { byPath: 'pci-0000:00:14.0-usb-0:3.1:1.0' } },
      appearTimeoutMs: 30_000,
    });
    assert.deepEqual(findDut(jig, 'imx8-evk').storage, {
      mux: { driver: 'usbsdmux', sg: '/dev/usb-sd-mux/id-000000000123', timeoutMs: 10_000 },
      device: { path: '/dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000000123-0:0' },
      appearTimeoutMs: 15_000,
    });
    assert.deepEqual(findDut(jig, 'vdut-1').storage?.mux, {
      driver: 'virtual',
      url: 'http://192.0.2.10:8089',
      timeoutMs: 5000,
    });
    // A DUT without a medium has no storage key at all (not even an undefined one).
    assert.equal(Object.hasOwn(findDut(jig, 'always-on'), 'storage'), false);
  });

  it('accepts a command mux with a USB-matched device', () => {
    const jig = parseJigDescription(
      withStorage(
        `{ mux: { driver: command, host: "gpioset gpiochip0 5=1", dut: "gpioset gpiochip0 5=0" }, device: { usb: { vid: "0424", pid: "2640", serial: "000000264001" } }, appearTimeoutMs: 5000 }`,
      ),
      'lab.yaml',
    );
    assert.deepEqual(jig.duts[0]?.storage, {
      mux: {
        driver: 'command',
        host: 'gpioset gpiochip0 5=1',
        dut: 'gpioset gpiochip0 5=0',
        timeoutMs: 10_000,
      },
      device: { usb: { vid: '0424', pid: '2640', serial: '000000264001' } },
      appearTimeoutMs: 5000,
    });
  });

  it('names the key path of a mux driver setting', () => {
    assert.deepEqual(problems(withStorage('{ mux: { driver: sdwire }, device: { path: /dev/sda } }')), [
      'lab.yaml: duts[0].storage.mux.serial: missing, expected a string',
    ]);
    assert.deepEqual(
      problems(
        withStorage('{ mux: { driver: sdwire, serial: a, colour: red }, device: { path: /dev/sda } }'),
      ),
      ['lab.yaml: duts[0].storage.mux.colour: unknown key'],
    );
  });

  it('reports an unknown or missing mux driver, and a missing mux or device', () => {
    assert.deepEqual(problems(withStorage('{ mux: { driver: sd-wire }, device: { path: /dev/sda } }')), [
      'lab.yaml: duts[0].storage.mux.driver: unknown storage mux driver "sd-wire"; expected one of command, qemu, sdwire, usbsdmux, virtual',
    ]);
    assert.deepEqual(problems(withStorage('{ mux: { serial: a }, device: { path: /dev/sda } }')), [
      'lab.yaml: duts[0].storage.mux.driver: missing, expected a string',
    ]);
    assert.deepEqual(problems(withStorage('{ appearTimeoutMs: 1000 }')).sort(), [
      'lab.yaml: duts[0].storage.device: missing, expected a mapping',
      'lab.yaml: duts[0].storage.mux: missing, expected a mapping',
    ]);
  });

  it('wants exactly one of device path and usb, an absolute path and a quoted vid', () => {
    const mux = '{ driver: usbsdmux, sg: /dev/sg1 }';
    assert.deepEqual(
      problems(withStorage(`{ mux: ${mux}, device: { path: /dev/sda, usb: { serial: X } } }`)),
      ['lab.yaml: duts[0].storage.device: expected exactly one of "path" and "usb"'],
    );
    assert.deepEqual(problems(withStorage(`{ mux: ${mux}, device: {} }`)), [
      'lab.yaml: duts[0].storage.device: expected exactly one of "path" and "usb"',
    ]);
    assert.deepEqual(problems(withStorage(`{ mux: ${mux}, device: { path: sda } }`)), [
      'lab.yaml: duts[0].storage.device.path: expected an absolute device path, got "sda"',
    ]);
    assert.deepEqual(problems(withStorage(`{ mux: ${mux}, device: { usb: { vid: 0424 } } }`)), [
      'lab.yaml: duts[0].storage.device.usb.vid: expected 4 hex digits in quotes, such as "0403", got 424',
    ]);
  });

  it('reports every storage mistake at once, from both passes, next to other mistakes', () => {
    const lines = problems(`duts:
  - name: a
    storage:
      mux: { driver: usbsdmux, sg: sg0 }
      device: { path: /dev/sda }
      appearTimeoutMs: 0
      retries: 3
  - name: b
    power: { driver: tasmota, url: x }
    storage: { mux: { driver: virtual, url: x }, device: { path: /dev/sdb } }
`);
    assert.deepEqual(lines.sort(), [
      'lab.yaml: duts[0].storage.appearTimeoutMs: expected a number >= 1, got 0',
      'lab.yaml: duts[0].storage.mux.sg: expected the absolute path of the mux\'s /dev/sg* node, got "sg0"',
      'lab.yaml: duts[0].storage.retries: unknown key',
      'lab.yaml: duts[1].power.url: expected an http:// or https:// URL, got "x"',
      'lab.yaml: duts[1].storage.mux.url: expected an http:// or https:// URL, got "x"',
    ]);
  });

  it('refuses storage that is not a mapping', () => {
    assert.deepEqual(problems(withStorage('/dev/sda')), [
      'lab.yaml: duts[0].storage: expected a mapping, got "/dev/sda"',
    ]);
  });
});
