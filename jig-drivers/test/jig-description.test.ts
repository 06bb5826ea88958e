import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { JigletError } from '../../protocol/src/errors.js';
import { DEFAULT_SHELL, findDut, loadJigDescription, parseJigDescription } from '../src/jig-description.js';

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

const VALID_DUT = `
  - name: rpi4-a
    power: { driver: tasmota, url: http://10.0.0.5 }`;

describe('jig description', () => {
  it('loads a valid file, with each driver validated by its own schema and defaults filled in', async () => {
    const jig = await loadJigDescription(LAB1);
    assert.equal(jig.source, LAB1);
    assert.deepEqual(
      jig.duts.map((d) => d.name),
      ['rpi4-a', 'bbb-1', 'imx8-evk', 'rpi3-relay', 'pi-zero-gpio', 'vdut-1', 'always-on'],
    );
    assert.deepEqual(findDut(jig, 'rpi4-a'), {
      name: 'rpi4-a',
      labels: { 'device-type': 'raspberrypi4-64', site: 'lab1' },
      power: { driver: 'tasmota', url: 'http://10.0.0.5', offTimeMs: 3000, timeoutMs: 5000 },
      serial: { usb: { vid: '0403', pid: '6001', serial: 'A10K' }, baud: 115200 },
      safeState: { power: 'off' },
      shell: { ...DEFAULT_SHELL, postLogin: [] },
    });
    assert.deepEqual(findDut(jig, 'bbb-1').power, {
      driver: 'shelly',
      url: 'http://10.0.0.6',
      gen: 2,
      channel: 1,
      offTimeMs: 2000,
      timeoutMs: 5000,
    });
    assert.equal(findDut(jig, 'bbb-1').serial?.baud, 115200);
    assert.deepEqual(findDut(jig, 'imx8-evk').safeState, { power: 'on' });
    assert.equal(findDut(jig, 'vdut-1').power?.offTimeMs, 0);
    assert.deepEqual(findDut(jig, 'always-on'), {
      name: 'always-on',
      labels: { 'device-type': 'nuc' },
      power: undefined,
      serial: undefined,
      safeState: { power: 'unchanged' },
      shell: { ...DEFAULT_SHELL, postLogin: [] },
    });
    assert.throws(() => findDut(jig, 'nope'), {
      code: 'JIGLET_E_NOT_FOUND',
      message: /no DUT "nope" in .*lab1.yaml \(there are: rpi4-a, bbb-1/,
    });
  });

  it('keeps the lease devices a DUT names, and refuses a relative path', () => {
    const jig = parseJigDescription(
      `duts:${VALID_DUT}\n    leaseDevices: [/dev/bus/usb/001/004]`,
      'lab.yaml',
    );
    assert.deepEqual(jig.duts[0]?.leaseDevices, ['/dev/bus/usb/001/004']);
    assert.deepEqual(problems(`duts:${VALID_DUT}\n    leaseDevices: [ttyACM0]`), [
      'lab.yaml: duts[0].leaseDevices[0]: expected an absolute device path, got "ttyACM0"',
    ]);
  });

  it('reads a shell section for exec: prompts in RE2, the password only as a file', () => {
    const jig = parseJigDescription(
      `duts:${VALID_DUT}\n    shell: { user: pi, passwordFile: pw.txt, prompt: '\\$ $', postLogin: ['stty -echo'] }`,
      'lab.yaml',
    );
    assert.deepEqual(jig.duts[0]?.shell, {
      ...DEFAULT_SHELL,
      user: 'pi',
      passwordFile: 'pw.txt',
      prompt: '\\$ $',
      postLogin: ['stty -echo'],
    });
    const lines = problems(`duts:${VALID_DUT}\n    shell: { password: hunter2, prompt: '(a)\\1' }`);
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('duts[0].shell') && l.includes('password')));
    assert.ok(lines.some((l) => l.includes('duts[0].shell.prompt') && l.includes('RE2')));
  });

  it('names the key path, what was expected and what was found for a driver setting', () => {
    const lines = problems(`duts:${VALID_DUT}
  - name: rpi4-b
    power: { driver: tasmota, url: x }`);
    assert.deepEqual(lines, ['lab.yaml: duts[1].power.url: expected an http:// or https:// URL, got "x"']);
  });

  it('reports every mistake at once', () => {
    const lines = problems(`duts:
  - name: Rpi_4
    labels: { site: 1 }
    power: { driver: tasmota, url: http://10.0.0.5, outlet: 0, colour: red }
  - name: rpi4-b
    power: { driver: zigbee }
    serial: { path: dev/ttyUSB0, baud: fast }
  - name: rpi4-c
    power: { driver: shelly, url: http://10.0.0.6 }
    serial: { usb: { vid: 0403, pid: "60x1" } }
    safeState: { power: maybe }
    colour: blue`);
    assert.deepEqual(lines.sort(), [
      'lab.yaml: duts[0].labels.site: expected a string, got 1',
      'lab.yaml: duts[0].name: expected a DUT name: a-z, 0-9 and "-", not starting with "-", at most 63 characters, got "Rpi_4"',
      'lab.yaml: duts[0].power.colour: unknown key',
      'lab.yaml: duts[0].power.outlet: expected a number >= 1, got 0',
      'lab.yaml: duts[1].power.driver: unknown power driver "zigbee"; expected one of command, gpio, qemu, shelly, tasmota, usb-hid-relay, virtual',
      'lab.yaml: duts[1].serial.baud: expected a number, got "fast"',
      'lab.yaml: duts[1].serial.path: expected an absolute device path, got "dev/ttyUSB0"',
      'lab.yaml: duts[2].colour: unknown key',
      'lab.yaml: duts[2].power.gen: expected 1 (Gen1 REST API) or 2 (Gen2+ RPC API)',
      'lab.yaml: duts[2].safeState.power: expected one of "off", "on", "unchanged", got "maybe"',
      'lab.yaml: duts[2].serial.usb.pid: expected 4 hex digits in quotes, such as "0403", got "60x1"',
      'lab.yaml: duts[2].serial.usb.vid: expected 4 hex digits in quotes, such as "0403", got 403',
    ]);
  });

  it('refuses duplicate DUT names', () => {
    assert.deepEqual(problems(`duts:${VALID_DUT}${VALID_DUT}`), [
      'lab.yaml: duts[1].name: duplicate DUT name "rpi4-a" (also duts[0])',
    ]);
  });

  it('refuses a serial console given both as a path and as a USB match, or as neither', () => {
    assert.deepEqual(
      problems(`duts:\n  - name: a\n    serial: { path: /dev/ttyUSB0, usb: { serial: A10K } }`),
      ['lab.yaml: duts[0].serial: expected exactly one of "path" and "usb"'],
    );
    assert.deepEqual(problems(`duts:\n  - name: a\n    serial: { usb: { pid: "6001" } }`), [
      'lab.yaml: duts[0].serial.usb.vid: pid needs vid',
    ]);
    assert.deepEqual(problems(`duts:\n  - name: a\n    serial: { baud: 9600 }`), [
      'lab.yaml: duts[0].serial: expected exactly one of "path" and "usb"',
    ]);
  });

  it('refuses a safe state of "off" for a DUT without a power driver', () => {
    assert.deepEqual(problems(`duts:\n  - name: a\n    safeState: { power: off }`), [
      'lab.yaml: duts[0].safeState.power: "off" needs a power driver',
    ]);
  });

  it('reports a missing power driver name, a missing duts list and a non-mapping document', () => {
    assert.deepEqual(problems(`duts:\n  - name: a\n    power: { url: http://x }`), [
      'lab.yaml: duts[0].power.driver: missing, expected a string',
    ]);
    assert.deepEqual(problems(''), ['lab.yaml: duts: missing, expected a list']);
    assert.deepEqual(problems('- a\n- b'), ['lab.yaml: (top level): expected a mapping, got a list']);
  });

  it('reports YAML syntax errors and duplicate keys with their line', () => {
    assert.match(
      problems('duts:\n  - name: a\n    name: b\n')[0]!,
      /^lab\.yaml: line 3: Map keys must be unique/,
    );
    assert.match(problems('duts: [\n')[0]!, /^lab\.yaml: line \d+: /);
  });

  it('reports a missing file as JIGLET_E_NOT_FOUND', async () => {
    await assert.rejects(loadJigDescription('/nonexistent/jig.yaml'), {
      code: 'JIGLET_E_NOT_FOUND',
      message: '/nonexistent/jig.yaml: cannot read the jig description: ENOENT',
    });
  });
});
