/**
 * The sdwire and usbsdmux drivers against stand-ins for their vendor tools: shell scripts put first
 * on PATH that record their argv and print what the real tools print (sd-mux-ctrl's
 * `SD connected to: TS`, usbsdmux's `host`). Real child processes, real exit codes, real deadlines.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StepEvent } from '../../protocol/src/driver-events.js';
import { JigletError } from '../../protocol/src/errors.js';
import { builtinStorageMuxRegistry } from '../src/storage-mux-registry.js';
import { sideFromSdMuxStatus } from '../src/storage-mux-sdwire.js';
import { sideFromUsbsdmuxGet } from '../src/storage-mux-usbsdmux.js';

/** A fake vendor tool in `dir`: records each call's argv, keeps its side in a file, can fail or hang. */
class FakeTool {
  readonly #dir: string;
  readonly #name: string;

  constructor(dir: string, name: string, body: string) {
    this.#dir = dir;
    this.#name = name;
    const file = path.join(dir, name);
    // One line per call, arguments separated by a unit separator (0x1f) so spaces survive.
    writeFileSync(
      file,
      `#!/bin/sh
state=${JSON.stringify(this.#file('state'))}
{ sep=''; for a in "$@"; do printf '%s%s' "$sep" "$a"; sep=$(printf '\\037'); done; echo; } >> ${JSON.stringify(this.#file('calls'))}
case "$(cat ${JSON.stringify(this.#file('mode'))} 2>/dev/null)" in
  fail) cat ${JSON.stringify(this.#file('stderr'))} >&2; exit 1 ;;
  hang) echo "opening device" >&2; sleep 300 ;;
  garbage) echo "Segmentation fault"; exit 0 ;;
esac
${body}
`,
    );
    chmodSync(file, 0o755);
  }

  #file(suffix: string): string {
    return path.join(this.#dir, `${this.#name}.${suffix}`);
  }

  /** The argv of every call so far, without argv[0]. */
  calls(): string[][] {
    try {
      return readFileSync(this.#file('calls'), 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => line.split('\x1f'));
    } catch {
      return []; // never called: no calls file yet
    }
  }

  /** Makes the next calls fail with `stderr`, hang, or print garbage; `ok` undoes it. */
  behave(mode: 'ok' | 'fail' | 'hang' | 'garbage', stderr = ''): void {
    writeFileSync(this.#file('mode'), mode);
    writeFileSync(this.#file('stderr'), stderr);
  }

  /** Sets the side the fake hardware is on. */
  setState(state: string): void {
    writeFileSync(this.#file('state'), `${state}\n`);
  }
}

/** Asserts a promise rejects with a JigletError of `code` whose message matches `pattern`. */
async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof JigletError, `expected a JigletError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('sdwire and usbsdmux storage mux drivers (fake tools on PATH)', () => {
  const registry = builtinStorageMuxRegistry();
  const savedPath = process.env.PATH;
  let dir: string;
  let sdMuxCtrl: FakeTool;
  let usbsdmux: FakeTool;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-mux-tools-'));
    // Upstream sd-mux-ctrl: --ts / --dut switch silently, --status prints "SD connected to: TS|DUT".
    sdMuxCtrl = new FakeTool(
      dir,
      'sd-mux-ctrl',
      `case "$2" in
  --ts) echo TS > "$state" ;;
  --dut) echo DUT > "$state" ;;
  --status) echo "SD connected to: $(cat "$state")" ;;
  *) echo "unknown option $2" >&2; exit 1 ;;
esac`,
    );
    // usbsdmux: `usbsdmux SG host|dut|off` switches silently, `get` prints the mode in lower case.
    usbsdmux = new FakeTool(
      dir,
      'usbsdmux',
      `case "$2" in
  host|dut|off) echo "$2" > "$state" ;;
  get) cat "$state" ;;
  *) echo "usbsdmux: error: argument mode: invalid choice: '$2'" >&2; exit 2 ;;
esac`,
    );
    sdMuxCtrl.setState('DUT');
    usbsdmux.setState('off');
    process.env.PATH = `${dir}${path.delimiter}${savedPath}`;
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    rmSync(dir, { recursive: true, force: true });
  });

  it('sdwire: runs sd-mux-ctrl --device-serial=SERIAL --ts / --dut / --status and reads the side', async () => {
    const steps: StepEvent[] = [];
    const mux = registry.create(
      { driver: 'sdwire', serial: 'sdw-bbb 1' },
      { dutName: 'bbb-1', onStep: (step) => steps.push(step) },
    );
    assert.equal(await mux.status(), 'dut');
    await mux.toHost();
    assert.equal(await mux.status(), 'host');
    await mux.toDut();
    assert.equal(await mux.status(), 'dut');
    assert.deepEqual(sdMuxCtrl.calls(), [
      ['--device-serial=sdw-bbb 1', '--status'],
      ['--device-serial=sdw-bbb 1', '--ts'],
      ['--device-serial=sdw-bbb 1', '--status'],
      ['--device-serial=sdw-bbb 1', '--dut'],
      ['--device-serial=sdw-bbb 1', '--status'],
    ]);
    assert.deepEqual(
      steps.map(({ dut, driver, action, result }) => ({ dut, driver, action, result })),
      [
        { dut: 'bbb-1', driver: 'sdwire', action: 'status', result: 'dut' },
        { dut: 'bbb-1', driver: 'sdwire', action: 'to-host', result: undefined },
        { dut: 'bbb-1', driver: 'sdwire', action: 'status', result: 'host' },
        { dut: 'bbb-1', driver: 'sdwire', action: 'to-dut', result: undefined },
        { dut: 'bbb-1', driver: 'sdwire', action: 'status', result: 'dut' },
      ],
    );
  });

  it('sdwire: reads upstream and fork status wording, and refuses output it cannot read', async () => {
    assert.equal(sideFromSdMuxStatus('SD connected to: TS\n'), 'host');
    assert.equal(sideFromSdMuxStatus('SD connected to: DUT\n'), 'dut');
    // Forks print Host/RPI; the old SD-MUX prints a USB line first.
    assert.equal(sideFromSdMuxStatus('USB connected to: Host\nSD connected to: RPI\n'), 'dut');
    assert.equal(sideFromSdMuxStatus('SD connected to: Host\n'), 'host');
    assert.equal(sideFromSdMuxStatus('Device not initialized!\n'), 'unknown');
    assert.equal(sideFromSdMuxStatus(''), undefined);

    const mux = registry.create({ driver: 'sdwire', serial: 'sdw-1' }, { dutName: 'bbb-1' });
    sdMuxCtrl.behave('garbage');
    await rejectsWith(
      mux.status(),
      'JIGLET_E_UNAVAILABLE',
      /^sdwire storage mux of bbb-1: sd-mux-ctrl --device-serial=sdw-1 --status: expected "SD connected to: TS\|DUT", got "Segmentation fault"$/,
    );
  });

  it('sdwire: a failing tool is an error carrying its exit code and stderr', async () => {
    const mux = registry.create({ driver: 'sdwire', serial: 'sdw-9' }, { dutName: 'bbb-1' });
    sdMuxCtrl.behave('fail', 'Unable to open ftdi device: -3 (device not found)\n');
    await rejectsWith(
      mux.toHost(),
      'JIGLET_E_UNAVAILABLE',
      /^sdwire storage mux of bbb-1: sd-mux-ctrl --device-serial=sdw-9 --ts: exited with code 1: Unable to open ftdi device: -3 \(device not found\)$/,
    );
  });

  it('sdwire: a hanging tool is killed at the configured deadline', async () => {
    // Long enough for the fake tool (a shell script) to have printed its stderr line on a loaded
    // host before the deadline: the message must carry it.
    const mux = registry.create({ driver: 'sdwire', serial: 'sdw-1', timeoutMs: 2000 }, { dutName: 'bbb-1' });
    sdMuxCtrl.behave('hang');
    const started = performance.now();
    await rejectsWith(
      mux.toDut(),
      'JIGLET_E_DEADLINE_EXCEEDED',
      /sd-mux-ctrl --device-serial=sdw-1 --dut: no answer within 2000 ms; killed its process group; stderr: opening device$/,
    );
    assert.ok(performance.now() - started < 7000);
  });

  it('usbsdmux: runs usbsdmux SG host / dut / get and reads the side; off is unknown', async () => {
    const mux = registry.create(
      { driver: 'usbsdmux', sg: '/dev/usb-sd-mux/id-000000000123' },
      { dutName: 'imx8-evk' },
    );
    assert.equal(await mux.status(), 'unknown', 'off: connected to neither side');
    await mux.toHost();
    assert.equal(await mux.status(), 'host');
    await mux.toDut();
    assert.equal(await mux.status(), 'dut');
    const sg = '/dev/usb-sd-mux/id-000000000123';
    assert.deepEqual(usbsdmux.calls(), [
      [sg, 'get'],
      [sg, 'host'],
      [sg, 'get'],
      [sg, 'dut'],
      [sg, 'get'],
    ]);
    assert.equal(sideFromUsbsdmuxGet('HOST\n'), 'host');
    assert.equal(sideFromUsbsdmuxGet('Traceback (most recent call last):'), undefined);
  });

  it('usbsdmux: a failing tool is an error with its stderr; garbage output is refused', async () => {
    const mux = registry.create({ driver: 'usbsdmux', sg: '/dev/sg9' }, { dutName: 'imx8-evk' });
    usbsdmux.behave('fail', "FileNotFoundError: [Errno 2] No such file or directory: '/dev/sg9'\n");
    await rejectsWith(
      mux.toHost(),
      'JIGLET_E_UNAVAILABLE',
      /^usbsdmux storage mux of imx8-evk: usbsdmux \/dev\/sg9 host: exited with code 1: FileNotFoundError: \[Errno 2\] No such file or directory: '\/dev\/sg9'$/,
    );
    usbsdmux.behave('garbage');
    await rejectsWith(
      mux.status(),
      'JIGLET_E_UNAVAILABLE',
      /usbsdmux \/dev\/sg9 get: expected host, dut or off, got "Segmentation fault"$/,
    );
  });

  it('usbsdmux: a hanging tool is killed at the configured deadline', async () => {
    const mux = registry.create(
      { driver: 'usbsdmux', sg: '/dev/sg1', timeoutMs: 300 },
      { dutName: 'imx8-evk' },
    );
    usbsdmux.behave('hang');
    await rejectsWith(
      mux.status(),
      'JIGLET_E_DEADLINE_EXCEEDED',
      /usbsdmux \/dev\/sg1 get: no answer within 300 ms/,
    );
  });

  it('says a tool that is not installed is not on PATH', async () => {
    rmSync(path.join(dir, 'sd-mux-ctrl'));
    const mux = registry.create({ driver: 'sdwire', serial: 'sdw-1' }, { dutName: 'bbb-1' });
    await rejectsWith(
      mux.toHost(),
      'JIGLET_E_FAILED_PRECONDITION',
      /sd-mux-ctrl is not installed or not on PATH/,
    );
  });
});
