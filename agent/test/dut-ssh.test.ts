/**
 * SSH as a second way into a DUT, against a real OpenSSH server standing in for a virtual DUT's
 * network side (the QEMU DUT's own dropbear is tested in hil-tests/dut-ssh.test.ts): exec with
 * stderr apart and real exit codes, timeouts that kill the command, copies both ways over SSH and
 * over serial with checksums, interactive sessions, host keys learnt, refused and re-learnt after
 * a flash, a DUT whose SSH never answers, a key file others can read, and who may do what.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { editedBuiltinJig } from '../../fixtures/test-support/builtin-jig.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { freePort } from '../../fixtures/test-support/free-port.js';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { type SshdServer, startSshd } from '../../fixtures/test-support/sshd-server.js';
import type { TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type TestPki, testPki } from '../../fixtures/test-support/test-pki.js';
import { TimelineEventKind } from '../../protocol/gen/jiglet/v1/records.js';

const DUT = 'vdut-a';
/** Its SSH server never answers (a closed port). */
const DEAD = 'vdut-b';

describe('SSH to a DUT: exec, copies, sessions and host keys', function () {
  this.timeout(120_000);
  let agent: JigletProcess;
  let operator: JigletClient;
  let admin: JigletClient;
  let viewer: JigletClient;
  let pki: TestPki;
  let sshd: SshdServer;
  let deadKey: string;
  /** What runJigctl needs: the PKI and the agent's address. */
  let jigctl: TestAgent;
  const dirs: string[] = [];
  const tmp = (prefix: string): string => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };

  before(async () => {
    pki = await testPki();
    sshd = await startSshd(tmp('jiglet-sshd-'));
    const jigDir = tmp('jiglet-ssh-jig-');
    deadKey = join(jigDir, 'dead-key');
    copyFileSync(sshd.clientKey, deadKey);
    chmodSync(deadKey, 0o644);
    // A port nobody listens on (taken free, then closed): its DUT's SSH never answers.
    const closedPort = await freePort();
    const config = editedBuiltinJig('virtual.yaml', jigDir, (c) => {
      const duts = c.duts as { name: string; ssh?: unknown }[];
      duts.find((d) => d.name === DUT)!.ssh = {
        host: '127.0.0.1',
        port: sshd.port,
        user: 'root',
        keyFile: sshd.clientKey,
        hostKey: 'relearn-after-flash',
      };
      duts.find((d) => d.name === DEAD)!.ssh = {
        host: '127.0.0.1',
        port: closedPort,
        keyFile: deadKey,
        connectTimeoutMs: 1000,
      };
    });
    agent = await startJigletProcess({ stateDir: tmp('jiglet-ssh-state-'), tlsDir: pki.jigDir, config });
    operator = new JigletClient(pki.as('operator', agent.address));
    admin = new JigletClient(pki.as('admin', agent.address));
    viewer = new JigletClient(pki.as('viewer', agent.address));
    jigctl = { pki, address: agent.address } as unknown as TestAgent;
    // A fresh virtual jig's cards are blank: flash an OS so the serial console has a shell.
    const image = await buildImage({ out: join(jigDir, 'os.img'), version: '1.0.0', sizeBytes: 1024 * 1024 });
    await operator.flash(DUT, image.path);
    await operator.jig.power(DUT, 'on');
  });

  after(async () => {
    for (const c of [operator, admin, viewer]) c?.close();
    await agent?.stop();
    await sshd?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('runs a command with stderr apart, a real exit status and stdin, and gives the serial shell’s answer', async () => {
    const r = await operator.jig.exec(DUT, 'echo out; echo err >&2; exit 3', { via: 'ssh' });
    assert.equal(r.via, 'ssh');
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout.toString(), 'out\n');
    assert.equal(r.stderr.toString(), 'err\n');
    const argv = await operator.jig.exec(DUT, ['printf', '%s|', 'two words', "it's", '$HOME'], {
      via: 'ssh',
    });
    assert.equal(argv.stdout.toString(), "two words|it's|$HOME|");
    const binary = randomBytes(200_000);
    const echoed = await operator.jig.exec(DUT, 'sha256sum', {
      via: 'ssh',
      interactive: true,
      stdin: binary,
    });
    const { createHash } = await import('node:crypto');
    assert.match(
      echoed.stdout.toString(),
      new RegExp(`^${createHash('sha256').update(binary).digest('hex')} `),
    );
    const syntax = await operator.jig.exec(DUT, 'if then', { via: 'ssh' });
    assert.equal(syntax.exitCode, 2);
    assert.match(syntax.stderr.toString(), /syntax error/);
  });

  it('jigctl exec --via ssh passes stdout, stderr and the exit code through', async () => {
    const r = await runJigctl(jigctl, [
      'exec',
      '--dut',
      DUT,
      '--via',
      'ssh',
      '--',
      'echo to-out; echo to-err >&2; exit 7',
    ]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'to-out\n');
    assert.match(r.stderr, /^to-err$/m);
  });

  it('interrupts a command at its timeout, kills its whole process group, and answers 124', async () => {
    const marker = `${30 + Math.floor(Math.random() * 1000) / 1000}`;
    const started = Date.now();
    const r = await operator.jig.exec(DUT, `sh -c 'sleep ${marker}; echo never' & wait`, {
      via: 'ssh',
      timeoutMs: 1500,
    });
    assert.equal(r.exitCode, 124);
    assert.equal(r.timedOut, true);
    assert.ok(Date.now() - started < 20_000);
    assert.doesNotMatch(r.stdout.toString(), /never/);
    // '[s]leep' does not match pgrep's own command line.
    const left = await operator.jig.exec(DUT, `pgrep -f '[s]leep ${marker}' || echo none`, { via: 'ssh' });
    assert.equal(left.stdout.toString(), 'none\n');
  });

  it('copies 5 MiB to the DUT and back over SFTP, checked by SHA-256, and leaves no file behind a failed copy', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 17);
    const dir = tmp('jiglet-ssh-cp-');
    const remote = join(dir, 'on-dut.bin');
    const sent = await operator.dut.copyTo(DUT, remote, data, data.length, { mode: 0o600 });
    assert.equal(sent.via, 'ssh');
    assert.equal(sent.bytes, data.length);
    assert.deepEqual(readFileSync(remote), data);
    const pieces: Buffer[] = [];
    const got = await operator.dut.copyFrom(DUT, remote, (piece) => {
      pieces.push(piece);
    });
    assert.equal(got.sha256, sent.sha256);
    assert.deepEqual(Buffer.concat(pieces), data);
    const missing = await errorOf(operator.dut.copyFrom(DUT, join(dir, 'nope'), () => undefined));
    assert.equal(missing.code, 'JIGLET_E_NOT_FOUND');
    assert.match(missing.message, /reading \S+nope on vdut-a failed: no such file or folder/);
    const noFolder = await errorOf(operator.dut.copyTo(DUT, join(dir, 'no/such/dir/f'), data, data.length));
    assert.equal(noFolder.code, 'JIGLET_E_NOT_FOUND');
    const short = await errorOf(operator.dut.copyTo(DUT, join(dir, 'short'), data.subarray(0, 100), 200));
    assert.equal(short.code, 'JIGLET_E_INVALID_ARGUMENT');
    const relative = await errorOf(operator.dut.copyTo(DUT, 'relative/path', data, data.length));
    assert.equal(relative.code, 'JIGLET_E_INVALID_ARGUMENT');
    // Only the file that arrived whole is there: no temporary, no partial copy.
    assert.deepEqual(
      (await operator.jig.exec(DUT, `ls -A ${dir}`, { via: 'ssh' })).stdout.toString(),
      'on-dut.bin\n',
    );
  });

  it('copies over the serial console both ways with jigctl cp, checked by SHA-256', async () => {
    const dir = tmp('jiglet-serial-cp-');
    const local = join(dir, 'local.bin');
    const data = randomBytes(100_000);
    writeFileSync(local, data);
    const to = await runJigctl(jigctl, ['cp', '--via', 'serial', local, `${DUT}:${join(dir, 'remote.bin')}`]);
    assert.equal(to.code, 0, to.stderr);
    assert.match(to.stderr, /copied 100000 bytes to .* over serial/);
    assert.deepEqual(readFileSync(join(dir, 'remote.bin')), data);
    const back = await runJigctl(jigctl, [
      'cp',
      '--via',
      'serial',
      `${DUT}:${join(dir, 'remote.bin')}`,
      join(dir, 'back.bin'),
    ]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(readFileSync(join(dir, 'back.bin')), data);
    const tooBig = await errorOf(
      operator.dut.copyTo(DUT, join(dir, 'big'), Buffer.alloc(2 * 1024 * 1024), 2 * 1024 * 1024, {
        via: 'serial',
      }),
    );
    assert.equal(tooBig.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(tooBig.message, /copy over SSH/);
  });

  it('opens sessions: a command fed by stdin, and a login shell on a pty of the asked size', async () => {
    const cat = await operator.dut.ssh(DUT, { command: 'cat; echo done >&2' });
    await cat.write('hello over ssh\n');
    cat.endInput();
    const out: string[] = [];
    for await (const piece of cat.output) out.push(`${piece.stream}:${piece.data.toString()}`);
    assert.deepEqual(await cat.exited, { exitCode: 0, signal: '' });
    assert.deepEqual(out.join(''), 'stdout:hello over ssh\nstderr:done\n');

    const shell = await operator.dut.ssh(DUT, { pty: { rows: 33, cols: 101 } });
    await shell.write('stty size; exit 5\n');
    let text = '';
    for await (const piece of shell.output) text += piece.data.toString();
    assert.match(text, /33 101/);
    assert.equal((await shell.exited).exitCode, 5);
  });

  it('jigctl ssh and jigctl cp over SSH work from a pipe, as in a CI script', async () => {
    const session = await runJigctl(jigctl, ['ssh', '--dut', DUT, '--', 'cat; echo to-err >&2; exit 4'], {
      input: 'piped through\n',
    });
    assert.equal(session.code, 4, session.stderr);
    assert.equal(session.stdout, 'piped through\n');
    assert.match(session.stderr, /^to-err$/m);
    const remote = join(tmp('jiglet-ssh-cli-'), 'from-stdin.txt');
    const to = await runJigctl(jigctl, ['cp', '-', `${DUT}:${remote}`], { input: 'over sftp\n' });
    assert.equal(to.code, 0, to.stderr);
    assert.match(to.stderr, /copied 10 bytes to .* over ssh/);
    const back = await runJigctl(jigctl, ['cp', `${DUT}:${remote}`, '-']);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(back.stdout, 'over sftp\n');
    const missing = await runJigctl(jigctl, ['cp', `${DUT}:${remote}.nope`, '-']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^jigctl: reading \S+ on vdut-a failed: no such file or folder/);
  });

  it('refuses a changed host key, re-learns it after a flash, records both, and forgets it for an admin', async () => {
    await operator.jig.exec(DUT, 'true', { via: 'ssh' });
    const lease = await operator.leases.claim({ dut: DUT, ttlMs: 120_000 });
    operator.lease = lease.id;
    try {
      await sshd.restart({ newHostKey: true });
      // A power cycle drops the connection, as a reinstall would.
      await operator.jig.power(DUT, 'cycle');
      const refused = await errorOf(operator.jig.exec(DUT, 'true', { via: 'ssh' }));
      assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(
        refused.message,
        /host key of vdut-a at 127\.0\.0\.1:\d+ changed: jiglet learnt SHA256:\S+ on \S+, the DUT now shows SHA256:\S+, and vdut-a was not flashed through jiglet since/,
      );
      assert.match(refused.message, /jigctl dut forget-host-key vdut-a/);

      const image = await buildImage({
        out: join(tmp('jiglet-ssh-img-'), 'os.img'),
        version: '2.0.0',
        sizeBytes: 1024 * 1024,
      });
      await operator.flash(DUT, image.path);
      await operator.jig.power(DUT, 'on');
      const after = await operator.jig.exec(DUT, 'echo relearnt', { via: 'ssh' });
      assert.equal(after.stdout.toString(), 'relearnt\n');
      const copied = await operator.dut.copyTo(DUT, join(tmp('jiglet-ssh-rec-'), 'f'), Buffer.from('x'), 1);
      assert.equal(copied.bytes, 1);
    } finally {
      operator.lease = undefined;
      await operator.leases.release(lease.id);
    }
    const timeline = await operator.records.timeline({ leaseId: lease.id });
    const ssh = timeline.events
      .filter((e) => e.kind === TimelineEventKind.TIMELINE_EVENT_KIND_SSH)
      .map((e) => e.summary);
    assert.equal(ssh.length, 3, ssh.join('\n'));
    assert.match(ssh[0]!, /^ssh host key refused: the SSH host key of vdut-a/);
    assert.match(ssh[1]!, /^ssh host key relearnt: re-learnt after a flash: SHA256:\S+ → SHA256:\S+/);
    assert.match(
      ssh[2]!,
      /^ssh copy: copied 1 bytes to \S+ over ssh in \d+ ms, sha256 2d711642\w+ \(by operator\)/,
    );

    const denied = await errorOf(operator.dut.forgetHostKey(DUT));
    assert.equal(denied.code, 'JIGLET_E_PERMISSION_DENIED');
    assert.match(await admin.dut.forgetHostKey(DUT), /^SHA256:/);
    assert.equal(await admin.dut.forgetHostKey(DUT), '');
    // The lease's end switched the DUT off (its safe state).
    await operator.jig.power(DUT, 'on');
    // Forgotten: the next connection learns the key again.
    assert.equal((await operator.jig.exec(DUT, 'echo again', { via: 'ssh' })).stdout.toString(), 'again\n');
  });

  it('says what is wrong when SSH never answers, or the key file is readable by others', async () => {
    await operator.jig.power(DEAD, 'on');
    const exposed = await errorOf(operator.jig.exec(DEAD, 'true', { via: 'ssh', timeoutMs: 5000 }));
    assert.equal(exposed.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(exposed.message, /can be read by other users \(mode 644\): chmod 600 it/);
    chmodSync(deadKey, 0o600);
    const started = Date.now();
    const silent = await errorOf(operator.jig.exec(DEAD, 'true', { via: 'ssh', timeoutMs: 3000 }));
    assert.equal(silent.code, 'JIGLET_E_DEADLINE_EXCEEDED');
    assert.match(
      silent.message,
      /SSH server of vdut-b \(root@127\.0\.0\.1:\d+\) did not let jiglet in within \d+ s \(last: connection refused\)/,
    );
    assert.match(silent.message, /jigctl dut goto vdut-b booted/);
    assert.ok(Date.now() - started < 15_000);
  });

  it('keeps viewers out, and a leased DUT for its holder', async () => {
    await operator.jig.power(DUT, 'on');
    const denied = await errorOf(viewer.dut.copyFrom(DUT, '/etc/hostname', () => undefined));
    assert.equal(denied.code, 'JIGLET_E_PERMISSION_DENIED');
    const viewerExec = await errorOf(viewer.jig.exec(DUT, 'true', { via: 'ssh' }));
    assert.equal(viewerExec.code, 'JIGLET_E_PERMISSION_DENIED');
    const lease = await admin.leases.claim({ dut: DUT, ttlMs: 60_000 });
    try {
      const refused = await errorOf(operator.jig.exec(DUT, 'true', { via: 'ssh' }));
      assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(refused.message, /leased/);
      const session = await errorOf(
        operator.dut.ssh(DUT, { command: 'true' }).then(async (s) => {
          for await (const _ of s.output);
        }),
      );
      assert.equal(session.code, 'JIGLET_E_FAILED_PRECONDITION');
    } finally {
      await admin.leases.release(lease.id);
    }
  });
});
