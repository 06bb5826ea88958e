/**
 * The built-in virtual jig as a person runs it: `jiglet serve --config fixtures/jigs/virtual.yaml`
 * twice on one host (two state directories, --listen 127.0.0.1:0), both usable at once; and a
 * console driven from a pipe, as a CI script drives it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtinJig } from '../../fixtures/test-support/builtin-jig.js';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { assertOneLineError, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import type { TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type TestPki, testPki } from '../../fixtures/test-support/test-pki.js';

describe('the built-in virtual jig, twice on one host', function () {
  this.timeout(120_000);
  let pki: TestPki;
  const dirs: string[] = [];
  let jigs: JigletProcess[] = [];
  /** runJigctl needs only the PKI and the address of the agent. */
  const at = (i: number) => ({ pki, address: jigs[i]!.address }) as unknown as TestAgent;

  before(async () => {
    pki = await testPki();
    dirs.push(mkdtempSync(join(tmpdir(), 'jiglet-vjig1-')), mkdtempSync(join(tmpdir(), 'jiglet-vjig2-')));
    // The same file, unchanged; only --state-dir differs (and --listen 127.0.0.1:0).
    jigs = await Promise.all(
      dirs.map((stateDir) =>
        startJigletProcess({
          stateDir,
          tlsDir: pki.jigDir,
          config: builtinJig('virtual.yaml'),
          stderr: 'capture',
        }),
      ),
    );
  });

  after(async () => {
    await Promise.all(jigs.map((j) => j.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('both come up with their DUTs in their own state directories, and power works on both', async () => {
    assert.notEqual(jigs[0]!.address, jigs[1]!.address);
    for (const [i, stateDir] of dirs.entries()) {
      const list = await runJigctl(at(i), ['jig', '-o', 'json']);
      assert.equal(list.code, 0, list.stderr);
      const duts = JSON.parse(list.stdout) as { name: string; serial?: { port?: string } }[];
      assert.deepEqual(
        duts.map((d) => d.name),
        ['vdut-a', 'vdut-b'],
      );
      assert.match(JSON.stringify(duts), new RegExp(`${stateDir}/vdut-a-uart`));
    }
    const on = await Promise.all([0, 1].map((i) => runJigctl(at(i), ['power', 'on', '--dut', 'vdut-b'])));
    for (const r of on) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^vdut-b: on /);
    }
    // The first one's DUT boots to its login prompt (the console tests below log in there).
    const prompt = await runJigctl(at(0), [
      'expect',
      '--dut',
      'vdut-b',
      '--pattern',
      'login: $',
      '--since-power-on',
      '--timeout',
      '60s',
    ]);
    assert.equal(prompt.code, 0, prompt.stderr);
  });

  it('a piped console logs in and waits for the shell prompt with --until', async () => {
    // Enter first: what vdut-b printed before its UART was reopened may be lost (README: Services).
    const r = await runJigctl(at(0), ['console', '--dut', 'vdut-b', '--until', 'root@vdut-b'], {
      input: '\rroot\rsecret\r',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Password: /);
    assert.match(r.stdout, /root@vdut-b:~# $/);
  });

  it('a piped console without --until shows the answer until the DUT is quiet', async () => {
    const r = await runJigctl(at(0), ['console', '--dut', 'vdut-b'], { input: 'echo piped-$((6*7))\r' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^piped-42\r?$/m);
  });

  it('exits 1 with the last lines when --until never matches, 2 for a DUT typo', async () => {
    const never = await runJigctl(
      at(0),
      ['console', '--dut', 'vdut-b', '--until', 'no-such-output', '--timeout', '1s'],
      { input: 'echo still-here\r' },
    );
    assert.equal(never.code, 1);
    assert.match(never.stderr, /^jigctl: no line matched \/no-such-output\/ within 1 s\n/);
    assert.match(never.stderr, /^ {4}still-here$/m);
    const typo = await runJigctl(at(0), ['console', '--dut', 'vdut-c', '--until', 'x'], { input: '' });
    assert.equal(typo.code, 2, 'README, Exit codes: a name that does not exist is a wrong request');
    assertOneLineError(typo);
    assert.match(typo.stderr, /no DUT "vdut-c" on this jig \(there are: vdut-a, vdut-b\)/);
  });
});
