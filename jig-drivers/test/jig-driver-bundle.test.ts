/**
 * The bundled `jig-driver` (dist/bundle/jig-driver.js, what the agent runs) works, and keeps its
 * lazy loading: a power action loads neither serialport's nor libusb's native addon, and a serial
 * capture loads serialport but not libusb. Which CommonJS modules a run loaded is read from Node's
 * module cache at exit (both native packages are CommonJS, loaded from node_modules, not bundled).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';

/** The bundle, as the agent runs it (`npm run test:one` and `npm test` build first). */
const JIG_DRIVER = join(import.meta.dirname, '../../dist/bundle/jig-driver.js');

/** Preloaded: writes the CommonJS modules loaded so far to $JIGLET_TEST_LOADED at exit. */
const RECORD_LOADED =
  'data:text/javascript,import{createRequire}from"node:module";import{writeFileSync}from"node:fs";' +
  'const r=createRequire("/");process.on("exit",()=>writeFileSync(process.env.JIGLET_TEST_LOADED,' +
  'JSON.stringify(Object.keys(r.cache))))';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  loaded: string[];
}

describe('bundled jig-driver', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jiglet-bundle-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the bundle; `untilStdout` (if given) is awaited, then the driver is stopped with SIGTERM. */
  async function run(name: string, args: string[], untilStdout?: RegExp): Promise<Run> {
    const loadedFile = join(dir, `${name}.json`);
    const child = spawn(process.execPath, ['--import', RECORD_LOADED, JIG_DRIVER, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, JIGLET_TEST_LOADED: loadedFile },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = once(child, 'exit');
    if (untilStdout !== undefined) {
      await waitUntil(`${untilStdout} on stdout (stderr: ${stderr})`, () => untilStdout.test(stdout), 20_000);
      child.kill('SIGTERM');
    }
    const [code] = (await exited) as [number | null];
    const loaded = JSON.parse(await readFile(loadedFile, 'utf8')) as string[];
    return { code, stdout, stderr, loaded };
  }

  const uses = (loaded: string[], pkg: string): boolean =>
    loaded.some((f) => f.includes(`/node_modules/${pkg}/`));

  it('runs a power action without loading serialport or libusb', async () => {
    const config = JSON.stringify({
      driver: 'command',
      on: 'true',
      off: 'true',
      status: 'echo on',
      statusOnPattern: '^on$',
    });
    const r = await run('power', ['power', 'status', '--dut', 'bench-1', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'on\n');
    assert.match(r.stderr, /"action":"status"/, 'the step is recorded on stderr');
    assert.ok(!uses(r.loaded, 'usb'), `libusb loaded for power: ${r.loaded.join(', ')}`);
    assert.ok(!uses(r.loaded, 'serialport'), `serialport loaded for power: ${r.loaded.join(', ')}`);
  });

  it('captures a serial port without loading libusb', async () => {
    // /dev/ptmx opens a fresh pty master: a real terminal, nothing else attached.
    const r = await run('serial', ['serial', '--path', '/dev/ptmx'], / open \/dev\/ptmx\n/);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(uses(r.loaded, 'serialport'), 'the capture runs on serialport');
    assert.ok(!uses(r.loaded, 'usb'), `libusb loaded for a serial capture: ${r.loaded.join(', ')}`);
  });
});
