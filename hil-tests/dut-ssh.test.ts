/**
 * SSH to the QEMU DUT, as a lab uses it once a board has booted: Debian's kernel and dropbear in
 * the JigletOS initramfs, reached through QEMU's user-mode network, with the agent as the SSH
 * client. Exit codes and stderr, the same kernel as the serial console sees, copies both ways over
 * SSH and over serial, a reconnect after a reboot, a DUT whose SSH never comes up, and the host key
 * the DUT makes for a newly flashed image re-learnt (and recorded).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Lease } from '../client/src/lease-client.js';
import { TimelineEventKind } from '../client/src/record-client.js';
import { STEP_TIMEOUT_MS } from './support/login.js';
import { type HilTarget, openQemuTarget } from './support/target.js';

const DUT = 'qdut-1';

describe('HIL: SSH to the QEMU DUT (dropbear over user-mode networking)', function () {
  this.timeout(4 * STEP_TIMEOUT_MS);
  let target: HilTarget;
  let lease: Lease;

  before(async function () {
    // The QEMU jig's first start downloads Debian's kernel and dropbear packages.
    this.timeout(15 * 60_000);
    target = await openQemuTarget();
    lease = await target.operator.leases.claim({ dut: DUT, ttlMs: 10 * 60_000 });
    target.operator.lease = lease.id;
    await target.operator.flash(DUT, await target.release.goodImage());
    await target.operator.jig.power(DUT, 'on');
  });
  after(async () => {
    // Off first: the lease's end would switch it off while the agent is stopping.
    await target?.operator.jig.power(DUT, 'off').catch(() => undefined);
    if (lease) await target.operator.leases.release(lease.id).catch(() => undefined);
    await target?.stop();
  });

  const ssh = (command: string, timeoutMs = STEP_TIMEOUT_MS) =>
    target.operator.jig.exec(DUT, command, { via: 'ssh', timeoutMs });

  it('runs commands with stderr apart and the real exit status, on the kernel the console sees', async () => {
    // The first call waits for dropbear while the DUT boots.
    const r = await ssh('echo out; echo err >&2; exit 7');
    assert.deepEqual(
      { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString(), via: r.via },
      { code: 7, out: 'out\n', err: 'err\n', via: 'ssh' },
    );
    const overSsh = (await ssh('uname -r')).stdout.toString();
    const overSerial = (
      await target.operator.jig.exec(DUT, 'uname -r', { timeoutMs: STEP_TIMEOUT_MS })
    ).stdout.toString();
    assert.match(overSsh, /^\d+\.\d+\.\d+-\S+\n$/);
    assert.equal(overSerial, overSsh);
  });

  it('copies files both ways over SSH and over serial, checked by SHA-256', async () => {
    const big = randomBytes(1024 * 1024 + 3);
    const sent = await target.operator.dut.copyTo(DUT, '/tmp/big.bin', big, big.length);
    assert.equal(sent.via, 'ssh');
    const back: Buffer[] = [];
    await target.operator.dut.copyFrom(DUT, '/tmp/big.bin', (piece) => {
      back.push(piece);
    });
    assert.deepEqual(Buffer.concat(back), big);

    const small = randomBytes(48 * 1024);
    const viaSerial = await target.operator.dut.copyTo(DUT, '/tmp/small.bin', small, small.length, {
      via: 'serial',
    });
    assert.equal(viaSerial.via, 'serial');
    const pieces: Buffer[] = [];
    const fetched = await target.operator.dut.copyFrom(
      DUT,
      '/tmp/small.bin',
      (piece) => {
        pieces.push(piece);
      },
      { via: 'serial' },
    );
    assert.deepEqual(Buffer.concat(pieces), small);
    // What serial wrote, SSH reads the same.
    assert.equal((await ssh('sha256sum /tmp/small.bin')).stdout.toString().split(' ')[0], fetched.sha256);
  });

  it('connects again after a reboot, to the same host key', async () => {
    // The initramfs lives in RAM: a file written before the cycle is gone after a reboot.
    await ssh('echo before > /tmp/reboot-marker');
    await target.operator.jig.power(DUT, 'cycle');
    const after = await ssh('cat /tmp/reboot-marker 2>/dev/null || echo rebooted');
    assert.equal(after.stdout.toString(), 'rebooted\n');
    // The same key: no host key event besides the first learning (checked in the last test too).
  });

  it('says within its deadline that SSH never came up on a DUT whose image does not boot', async () => {
    await target.operator.flash(DUT, await target.release.badImage());
    await target.operator.jig.power(DUT, 'on');
    const started = Date.now();
    const failed = await ssh('true', 8000).then(
      () => assert.fail('exec over SSH answered on a DUT that never booted'),
      (err: Error & { code?: string }) => err,
    );
    assert.equal(failed.code, 'JIGLET_E_DEADLINE_EXCEEDED');
    assert.match(
      failed.message,
      /SSH server of qdut-1 \(root@127\.0\.0\.1:\d+\) did not let jiglet in within \d+ s/,
    );
    assert.ok(Date.now() - started < 30_000, `answered after ${Date.now() - started} ms`);
  });

  it('re-learns the host key a reflashed DUT makes, and records it in the run record', async () => {
    await target.operator.flash(DUT, await target.release.goodImage());
    await target.operator.jig.power(DUT, 'on');
    assert.equal((await ssh('echo back')).stdout.toString(), 'back\n');
    const timeline = await target.operator.records.timeline({ leaseId: lease.id }, { includeSerial: false });
    const changes = timeline.events
      .filter((e) => e.kind === TimelineEventKind.TIMELINE_EVENT_KIND_SSH)
      .map((e) => e.summary.split(':')[0] ?? '');
    assert.deepEqual(
      changes.filter((c) => c.startsWith('ssh host key')),
      ['ssh host key learnt', 'ssh host key relearnt'],
    );
  });
});
