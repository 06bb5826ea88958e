import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { LoopDevice } from './helpers/loop-device.js';
import { buildImage, sha256, type TestImage } from './helpers/test-images.js';

const CLI = path.join(import.meta.dirname, 'helpers/flash-cli.ts');

/** A finished CLI run. */
interface Finished {
  code: number | null;
  stdout: string[];
  stderr: string[];
}

/** Starts the CLI; `onStdoutLine` sees each stdout line as it arrives. */
function start(
  args: string[],
  onStdoutLine?: (line: string, child: ChildProcess) => void,
): Promise<Finished> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'flash', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout.push(line);
    onStdoutLine?.(line, child);
  });
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  // 'close' (not 'exit'): every line of both pipes has been read by then.
  return once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

describe('jig-driver flash (CLI)', () => {
  let dir: string;
  let image: TestImage;
  let loop: LoopDevice;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-cli-'));
    image = buildImage(path.join(dir, 'image.img'), 16 * 256, 5); // 16 MiB
    loop = new LoopDevice(path.join(dir, 'card.bin'), 16 * 1024 * 1024, 0);
  });

  after(() => {
    loop.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('flashes, prints progress JSON on stdout, and exits 0', async () => {
    const run = await start(['--image', image.path, '--device', loop.device, '--mux-json', 'none']);
    assert.equal(run.code, 0, run.stderr.join('\n'));
    assert.ok(run.stdout.length >= 7);
    for (const line of run.stdout) assert.ok('flash' in JSON.parse(line), line);
    assert.equal(JSON.parse(run.stdout.at(-1)!).flash.phase, 'done');
    assert.match(
      run.stderr.at(-1)!,
      new RegExp(
        `^jig-driver flash: wrote \\d+ of ${image.data.length} bytes to ${loop.device} .* verified, sha256 [0-9a-f]{64}$`,
      ),
    );
    assert.ok(run.stderr.slice(0, -1).every((line) => 'step' in JSON.parse(line)));
    assert.equal(sha256(readFileSync(loop.device)), sha256(image.data)); // the loop started zeroed
  });

  it('exits 1 with a one-line reason when the image is not an image', async () => {
    const page = path.join(dir, 'download.img');
    writeFileSync(page, '<!doctype html>\n<html>\n<body>rate limited</body>\n</html>\n');
    const run = await start(['--image', page, '--device', loop.device, '--mux-json', 'none']);
    assert.equal(run.code, 1);
    assert.equal(run.stderr.at(-1), 'jig-driver flash: download.img: not a disk image: looks like HTML');
  });

  it('exits 64 on bad usage', async () => {
    const badMux = await start(['--image', image.path, '--device', loop.device, '--mux-json', '{oops']);
    assert.equal(badMux.code, 64);
    assert.match(badMux.stderr.at(-1)!, /^jig-driver flash: --mux-json is not JSON: .* \(nor "none"\)$/);
    const missing = await start(['--device', loop.device, '--mux-json', 'none']);
    assert.equal(missing.code, 64);
    assert.match(missing.stderr.join('\n'), /Missing required argument: image/);
  });

  it('warns loudly with --no-verify', async () => {
    const run = await start([
      '--image',
      image.path,
      '--device',
      loop.device,
      '--mux-json',
      'none',
      '--no-verify',
    ]);
    assert.equal(run.code, 0);
    assert.ok(
      run.stderr.includes(
        `jig-driver flash: ${'WARNING: verification is OFF (--no-verify)'}: nothing was read back; a bad card or a lost write goes unnoticed`,
      ),
    );
    assert.match(run.stderr.at(-1)!, /NOT verified/);
  });

  it('stops on SIGTERM while waiting for the device, gives the medium back, exits 143', async () => {
    const run = await start(
      [
        '--image',
        image.path,
        '--device',
        path.join(dir, 'not-yet/sdz'),
        '--mux-json',
        '{"driver":"log"}',
        '--device-timeout-ms',
        '600000',
      ],
      (line, child) => {
        if (JSON.parse(line).flash.phase === 'wait-device') child.kill('SIGTERM');
      },
    );
    assert.equal(run.code, 143);
    assert.deepEqual(
      run.stderr.filter((line) => line.startsWith('mux:')),
      ['mux: toHost', 'mux: toDut'],
    );
    assert.equal(
      run.stderr.at(-1),
      'jig-driver flash: stopped by SIGTERM; the medium may hold a partial image',
    );
  });
});
