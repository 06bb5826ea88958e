/**
 * jigctl exec's engine end to end: the built-in virtual jig (a real /bin/sh after login on each
 * virtual DUT's pty, kernel lines at random moments on vdut-b) behind a real agent, over mutual
 * TLS, through the client library — exit codes, big and odd output, stdin, timeouts, who may type,
 * leases, power cycles, DUT states and the run record.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { editedBuiltinJig } from '../../fixtures/test-support/builtin-jig.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { JIGCTL, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import type { TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type TestPki, testPki } from '../../fixtures/test-support/test-pki.js';
import { TimelineEventKind } from '../../protocol/gen/jiglet/v1/records.js';

/** vdut-b prints a kernel line every 30 ms on average while its shell runs. */
const DUT = 'vdut-b';

describe('exec on the virtual jig', function () {
  this.timeout(120_000);
  let agent: JigletProcess;
  let operator: JigletClient;
  let admin: JigletClient;
  let pki: TestPki;
  const dirs: string[] = [];

  before(async () => {
    pki = await testPki();
    const stateDir = mkdtempSync(join(tmpdir(), 'jiglet-exec-'));
    const jigDir = mkdtempSync(join(tmpdir(), 'jiglet-exec-jig-'));
    dirs.push(stateDir, jigDir);
    const config = editedBuiltinJig('virtual.yaml', jigDir, (c) => {
      const services = c.services as { name: string; args: string[] }[];
      services
        .find((s) => s.name === DUT)!
        .args.push('--printk-noise', '--printk-noise-mean-ms', '30', '--printk-noise-seed', '7');
    });
    agent = await startJigletProcess({ stateDir, tlsDir: pki.jigDir, config });
    operator = new JigletClient(pki.as('operator', agent.address));
    admin = new JigletClient(pki.as('admin', agent.address));
    await operator.jig.power(DUT, 'on');
  });

  after(async () => {
    operator?.close();
    admin?.close();
    await agent?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('logs in after a power-on and gives back exit codes 0, 1, 42 and 255', async () => {
    const first = await operator.jig.exec(DUT, 'echo hello');
    assert.equal(first.stdout.toString(), 'hello\n');
    assert.equal(first.loggedIn, true);
    for (const code of [0, 1, 42, 255]) {
      const r = await operator.jig.exec(DUT, `echo code ${code}; exit ${code}`);
      assert.equal(r.exitCode, code);
      assert.equal(r.stdout.toString(), `code ${code}\n`);
      assert.equal(r.loggedIn, false);
    }
    const argv = await operator.jig.exec(DUT, ['printf', '%s|', 'two words', "it's", '$HOME']);
    assert.equal(argv.stdout.toString(), "two words|it's|$HOME|");
  });

  it('returns 1 MiB of output, CR LF and long lines exactly, with kernel lines kept out', async () => {
    const big = await operator.jig.exec(
      DUT,
      'yes 0123456789abcdefghijklmnopqrstuvwxyz 2>/dev/null | head -c 1048576',
      {
        timeoutMs: 60_000,
      },
    );
    const strange = big.stdout
      .toString()
      .split('\n')
      .slice(0, -1)
      .filter((l) => l !== '0123456789abcdefghijklmnopqrstuvwxyz');
    assert.deepEqual(strange, []);
    assert.equal(big.stdout.length, 1048576);
    const long = 'y'.repeat(500);
    const odd = await operator.jig.exec(DUT, `printf 'a\\r\\nb\\n'; echo ${long}; printf 'end'`);
    assert.equal(odd.stdout.toString(), `a\r\nb\n${long}\nend`);
  });

  it('keeps kernel lines that arrive in the middle of the output out of stdout', async () => {
    const r = await operator.jig.exec(
      DUT,
      'for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; sleep 0.05; done',
    );
    assert.equal(r.stdout.toString(), Array.from({ length: 10 }, (_, i) => `line ${i + 1}\n`).join(''));
    assert.ok(r.kernelLines.length > 0, 'kernel lines arrived while it ran');
    assert.ok(r.kernelLines.every((l) => /^\[ *\d+\.\d{6}\] /.test(l)));
  });

  it('runs calls made at the same time one after another, each with its own output', async () => {
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((i) => operator.jig.exec(DUT, `echo call ${i}; exit ${i}`)),
    );
    assert.deepEqual(
      results.map((r) => [r.exitCode, r.stdout.toString()]),
      [1, 2, 3, 4, 5].map((i) => [i, `call ${i}\n`]),
    );
  });

  it('gives a command that reads stdin an empty stdin instead of hanging', async () => {
    const r = await operator.jig.exec(DUT, 'read line; echo "got [$line] $?"', { timeoutMs: 10_000 });
    assert.equal(r.stdout.toString(), 'got [] 1\n');
    assert.equal(r.timedOut, false);
  });

  it('interrupts a command at its timeout with exit code 124; the next one works', async () => {
    const r = await operator.jig.exec(DUT, 'echo begun; sleep 60', { timeoutMs: 1500 });
    assert.equal(r.exitCode, 124);
    assert.equal(r.timedOut, true);
    const next = await operator.jig.exec(DUT, 'echo next');
    assert.equal(next.stdout.toString(), 'next\n');
    assert.equal(next.exitCode, 0);
  });

  it("jigctl exec prints the output and exits with the DUT's exit code (124 on timeout)", async () => {
    // runJigctl needs only the PKI and the address of the agent.
    const t = { pki, address: agent.address } as unknown as TestAgent;
    const ok = await runJigctl(t, ['exec', '--dut', DUT, '--', 'printf', '%s\\n', 'one two', 'three']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'one two\nthree\n');
    const line = await runJigctl(t, ['exec', '--dut', DUT, '--', 'echo out; exit 42']);
    assert.equal(line.code, 42);
    assert.equal(line.stdout, 'out\n');
    const slow = await runJigctl(t, ['exec', '--dut', DUT, '--timeout', '1s', '--', 'sleep', '30']);
    assert.equal(slow.code, 124);
    assert.match(slow.stderr, /interrupted/);
    const typed = await runJigctl(t, ['exec', '--dut', DUT, '-i', '--', 'wc -l'], { input: 'a\nb\nc\n' });
    assert.equal(typed.code, 0, typed.stderr);
    assert.match(typed.stdout, /\b3\n$/);
    const viewer = await runJigctl(t, ['exec', '--dut', DUT, '--', 'true'], { as: 'viewer' });
    assert.equal(viewer.code, 77);
  });

  it('is refused, naming the holder, while another identity holds the console', async () => {
    const session = await admin.jig.console(DUT);
    try {
      const err = await errorOf(operator.jig.exec(DUT, 'true'));
      assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(err.message, /in use by admin/);
    } finally {
      await session.close();
    }
    assert.equal((await operator.jig.exec(DUT, 'echo free')).stdout.toString(), 'free\n');
  });

  it('needs the lease on a leased DUT', async () => {
    const lease = await admin.leases.claim({ dut: DUT, ttlMs: 60_000 });
    try {
      const err = await errorOf(operator.jig.exec(DUT, 'true'));
      assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(err.message, /leased by admin/);
      admin.lease = lease.id;
      assert.equal((await admin.jig.exec(DUT, 'echo mine')).stdout.toString(), 'mine\n');
    } finally {
      admin.lease = undefined;
      await admin.leases.release(lease.id);
    }
    // Inside `jigctl claim --exec`, exec carries the claimed lease (JIGLET_LEASE) by itself.
    await operator.jig.power(DUT, 'on'); // after the release's switch to the safe state
    const t = { pki, address: agent.address } as unknown as TestAgent;
    const claimed = await runJigctl(t, [
      'claim',
      '--dut',
      DUT,
      '--exec',
      '--',
      process.execPath,
      JIGCTL,
      'exec',
      '--dut',
      DUT,
      '--',
      'echo under the lease',
    ]);
    assert.equal(claimed.code, 0, claimed.stderr);
    assert.match(claimed.stdout, /^under the lease$/m);
  });

  it('says at once that a powered-off DUT must be switched on first', async () => {
    await operator.jig.power(DUT, 'off');
    const err = await errorOf(operator.jig.exec(DUT, 'true'));
    assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(err.message, /powered off/);
  });

  it('logs in again after a power cycle', async () => {
    await operator.jig.power(DUT, 'cycle');
    const r = await operator.jig.exec(DUT, 'echo back', { timeoutMs: 60_000 });
    assert.equal(r.stdout.toString(), 'back\n');
    assert.equal(r.loggedIn, true);
  });

  it('goes to off, booted and shell, doing only what is missing, each step in the run record', async () => {
    const lease = await operator.leases.claim({ dut: DUT, ttlMs: 120_000 });
    operator.lease = lease.id;
    try {
      const names = async (state: 'off' | 'booted' | 'shell') =>
        (await operator.jig.gotoState(DUT, state, { timeoutMs: 60_000 })).steps.map((s) => s.name);
      assert.deepEqual(await names('off'), ['power off']);
      assert.deepEqual(await names('off'), ['already off']);
      assert.deepEqual(await names('booted'), ['power on', 'boot']);
      assert.deepEqual(await names('booted'), ['already booted']);
      const found = await operator.jig.expect(DUT, 'login: ', { sincePowerOn: true, timeoutMs: 5000 });
      assert.match(found.line, /login: /);
      const viaCli = await runJigctl({ pki, address: agent.address } as unknown as TestAgent, [
        'expect',
        '--dut',
        DUT,
        '--since-power-on',
        '--pattern',
        'login: ',
        '--timeout',
        '5s',
      ]);
      assert.equal(viaCli.code, 0, viaCli.stderr);
      assert.match(viaCli.stdout, /login: /);
      assert.deepEqual(await names('shell'), ['login']);
      assert.deepEqual(await names('shell'), ['already shell']);
      assert.equal((await operator.jig.exec(DUT, 'echo at shell')).stdout.toString(), 'at shell\n');
      const timeline = await operator.records.timeline({ leaseId: lease.id }, { includeSerial: false });
      const steps = timeline.events
        .filter((e) => e.kind === TimelineEventKind.TIMELINE_EVENT_KIND_STATE)
        .map((e) => `${e.fields.goal} ${e.fields.step}`);
      assert.deepEqual(steps, [
        'off power off',
        'off already off',
        'booted power on',
        'booted boot',
        'booted already booted',
        'shell login',
        'shell already shell',
      ]);
      assert.ok(timeline.events.some((e) => e.kind === TimelineEventKind.TIMELINE_EVENT_KIND_EXEC));
      // The HTML report shows them too.
      const t = { pki, address: agent.address } as unknown as TestAgent;
      const report = await runJigctl(t, ['report', '--lease', lease.id, '--no-serial', '-o', '-']);
      assert.equal(report.code, 0, report.stderr);
      assert.match(report.stdout, /data-kind="state"[^\n]*goto shell: login/);
      assert.match(report.stdout, /data-kind="exec"[^\n]*exec echo at shell: exit 0/);
    } finally {
      operator.lease = undefined;
      await operator.leases.release(lease.id);
      // Behind the release's own switch to the safe state, so the agent stops with no power job running.
      await operator.jig.power(DUT, 'off');
    }
  });

  it('jigctl dut goto shell --image flashes the image first, and only once', async () => {
    const t = { pki, address: agent.address } as unknown as TestAgent;
    const dir = mkdtempSync(join(tmpdir(), 'jiglet-exec-image-'));
    dirs.push(dir);
    const { path } = await buildImage({
      out: join(dir, 'os.img'),
      version: '4.5.6',
      sizeBytes: 16 * 1024 * 1024,
    });
    const goto = async () => {
      const r = await runJigctl(t, ['dut', 'goto', 'vdut-a', 'shell', '--image', path, '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { steps: { name: string }[] }).steps.map((s) => s.name);
    };
    assert.deepEqual(await goto(), ['flash', 'power on', 'boot', 'login']);
    assert.deepEqual(await goto(), ['already flashed', 'already shell']);
    const release = await operator.jig.exec('vdut-a', 'cat $VROOT/etc/os-release');
    assert.match(release.stdout.toString(), /^VERSION_ID=4\.5\.6$/m);
    // A run that must start from a clean image (the queue's) writes it again all the same.
    const sha256 = (await operator.images.upload(path)).sha256;
    const again = await operator.jig.gotoState('vdut-a', 'off', { imageSha256: sha256, reflash: true });
    assert.deepEqual(
      again.steps.map((s) => s.name),
      ['flash', 'already off'],
    );
    await operator.jig.power('vdut-a', 'off');
  });
});
