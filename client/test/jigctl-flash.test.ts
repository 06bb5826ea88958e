/**
 * `jigctl flash` and `jigctl images` as CI scripts use them: exit codes, a summary on stdout,
 * progress and warnings on stderr, the image cache listed and guarded.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../../fixtures/images/build-image.js';
import { JIGCTL, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

describe('jigctl flash and images', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  let dir: string;
  let image: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-cliflash-'));
    image = (
      await buildImage({ out: join(dir, 'os-5.0.0.img'), version: '5.0.0', sizeBytes: 8 * 1024 * 1024 })
    ).path;
    v = await startVirtualJig([{ name: 'vdut-a', storageBytes: 16 * 1024 * 1024 }]);
  });
  after(async () => {
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('flashes with a summary on stdout and the phases on stderr, then lists the cached image', async () => {
    const r = await runJigctl(v.t, ['flash', '--dut', 'vdut-a', image]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^vdut-a: flashed [0-9a-f]{12} \(8\.0 MiB uploaded; verified; job [0-9a-f-]{36}\)\n$/,
    );
    // Without a terminal (CI logs): one line per phase, with what it moved and how long it took.
    const t = '[\\d.]+ m?s';
    const lines = [
      `hash +8\\.0 MiB in ${t} \\([\\d.]+ MB/s\\)`,
      `upload +8\\.0 MiB in ${t} \\([\\d.]+ MB/s\\)`,
      `medium to host +${t}`,
      `wait for medium +${t}`,
      `write +8\\.0 MiB in ${t} \\([\\d.]+ MB/s\\)(; [\\d.]+ MiB written, zeros skipped)?`,
      `sync +${t}`,
      `verify +[\\d.]+ MiB in ${t} \\([\\d.]+ MB/s\\)`,
      `medium to DUT +${t}`,
      `done +8\\.0 MiB image in ${t} total`,
    ];
    assert.match(r.stderr, new RegExp(`^${lines.map((l) => `jigctl: ${l}\\n`).join('')}$`));
    const again = await runJigctl(v.t, ['flash', '--dut', 'vdut-a', image]);
    assert.match(again.stdout, /already on the agent; verified/);
    const listed = await runJigctl(v.t, ['images', '-o', 'json'], { as: 'viewer' });
    assert.equal(listed.code, 0, listed.stderr);
    const json = JSON.parse(listed.stdout) as { images: { name: string; size: number; sha256: string }[] };
    assert.deepEqual(
      json.images.map((i) => [i.name, i.size]),
      [['os-5.0.0.img', 8 * 1024 * 1024]],
    );
    const denied = await runJigctl(v.t, ['images', 'rm', json.images[0]!.sha256]);
    assert.equal(denied.code, 77);
  });

  it('on a terminal, the last frame of the bar reads 100% with the average rate and the total time', async () => {
    // python's pty.spawn gives jigctl a real terminal (stderr included) and relays it to our pipe.
    const shell = `"${process.execPath}" "${JIGCTL}" flash --dut vdut-a "${image}"; echo "exit=$?"`;
    const script = 'import pty, sys; pty.spawn(["sh", "-c", sys.argv[1]])';
    const r = await runJigctl(v.t, [], {
      command: ['python3', '-c', script, shell],
      holdStdin: true,
      onStdout: (text, child) => {
        if (text.includes('exit=')) child.stdin!.end();
      },
    });
    assert.match(r.stdout, /exit=0/, r.stdout);
    // Frames are redrawn in place; the last one (before the summary) is what stays on the screen.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences are what it removes
    const screen = r.stdout.replace(/\x1b\[[\d;?]*[A-Za-z]/g, '\n');
    const frames = screen.split(/[\r\n]+/).filter((f) => f.includes('%'));
    assert.match(
      frames.at(-1) ?? '',
      /^done +\[=+\] 100% \| 8\/8 MiB \| [\d.]+ MB\/s average \| [\d.]+ m?s total$/,
      frames.join('\n'),
    );
    assert.match(screen, /vdut-a: flashed [0-9a-f]{12} \(already on the agent; verified;/);
  });

  it('exits 1 with the reason for an image that is not one, and warns loudly without verification', async () => {
    const page = join(dir, 'index.img');
    writeFileSync(page, `<html>${'x'.repeat(4096)}</html>`);
    const bad = await runJigctl(v.t, ['flash', '--dut', 'vdut-a', page]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /jigctl: flash of vdut-a failed: .*not a disk image: looks like HTML/);
    const missing = await runJigctl(v.t, ['flash', '--dut', 'vdut-a', join(dir, 'nope.img')]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, `jigctl: cannot read the image ${join(dir, 'nope.img')}: no such file\n`);
    const unverified = await runJigctl(v.t, ['flash', '--dut', 'vdut-a', '--no-verify', image]);
    assert.equal(unverified.code, 0, unverified.stderr);
    assert.match(unverified.stderr, /WARNING: --no-verify/);
    assert.match(unverified.stdout, /NOT verified/);
    assert.equal((await runJigctl(v.t, ['flash', '--dut', 'vdut-a', image], { as: 'viewer' })).code, 77);
  });
});
