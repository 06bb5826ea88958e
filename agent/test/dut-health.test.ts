/**
 * DUT health over real gRPC/TLS: maintenance and quarantine keep claims off a DUT (label claims go
 * elsewhere, waiting claims wait), back to good serves the waiters; a health check due after a
 * lease runs before any waiting claim, as a job holding the DUT's lease, and its result sets the
 * health; health, counts and an interrupted check survive an agent restart; only admins may set
 * states or run checks.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { HEALTH_HOLDER } from '../../agent/src/jig/dut-health.js';
import { DutHealth } from '../../client/src/jig-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { type JigDescription, parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { JigServiceClient } from '../../protocol/gen/jiglet/v1/jig.js';
import type { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';

const TTL = 60_000;

/** A jig of DUTs without hardware: health needs none, and the lease machinery is the same. */
function jigOf(duts: object[]): JigDescription {
  return parseJigDescription(JSON.stringify({ duts }), 'health-lab.yaml');
}

/** The agent's own view of a DUT's health (read only; the tests act through gRPC). */
function healthOf(t: TestAgent, dut: string) {
  return t.agent.jig.health(dut).record;
}

describe('DUT health', function () {
  this.timeout(60_000);
  let t: TestAgent;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-health-'));
    t = await startTestAgent({
      jig: jigOf([
        { name: 'rpi4-a', labels: { 'device-type': 'rpi4' } },
        { name: 'rpi4-b', labels: { 'device-type': 'rpi4' } },
        {
          name: 'flaky',
          healthCheck: { command: ['sh', '-c', 'echo "no login prompt" >&2; exit 3'], everyJobs: 1 },
        },
        {
          name: 'sturdy',
          healthCheck: {
            command: ['sh', '-c', 'echo "$JIGLET_DUT $JIGLET_HEALTH_CHECK $JIGLET_LEASE $EXTRA"'],
            env: { EXTRA: 'from-yaml' },
            everyJobs: 1,
          },
        },
        // About every 1.4 s, so the timer can be seen to fire.
        { name: 'hourly', healthCheck: { command: ['true'], everyHours: 0.0004 } },
      ]),
    });
  });
  after(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses claims on a DUT in maintenance with the reason; label claims take another; good again serves the waiter', async () => {
    const admin = t.client('admin');
    const op = t.client('operator');
    const set = await admin.jig.setState('rpi4-a', 'maintenance', 'new SD card socket');
    assert.equal(set.health, DutHealth.DUT_HEALTH_MAINTENANCE);
    assert.equal(set.healthReason, 'new SD card socket');
    assert.equal(set.healthChangedBy, 'admin');
    assert.ok(set.healthChanged);

    const refused = await errorOf(op.leases.claim({ dut: 'rpi4-a', ttlMs: TTL }));
    assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(refused.message, /rpi4-a is in maintenance: new SD card socket/);
    const other = await op.leases.claim({ labels: { 'device-type': 'rpi4' }, ttlMs: TTL });
    assert.equal(other.dut, 'rpi4-b', 'a label claim skips the DUT in maintenance');
    await op.leases.release(other.id);

    const waiting = op.leases.claim({ dut: 'rpi4-a', ttlMs: TTL, waitMs: 20_000 });
    await waitUntil('the claim to queue', () => t.agent.leases.queue('rpi4-a').waiting === 1);
    const good = await admin.jig.setState('rpi4-a', 'good', 'socket replaced');
    assert.equal(good.health, DutHealth.DUT_HEALTH_GOOD);
    const lease = await waiting;
    assert.equal(lease.dut, 'rpi4-a');
    assert.equal(lease.holder, 'operator');

    // Out of service under a lease: the lease goes on, only new claims are refused.
    await admin.jig.setState('rpi4-a', 'bad', 'smells of smoke');
    assert.equal((await op.leases.renew(lease.id)).id, lease.id);
    await op.leases.release(lease.id);
    const quarantined = await errorOf(op.leases.claim({ dut: 'rpi4-a', ttlMs: TTL }));
    assert.match(
      quarantined.message,
      /rpi4-a is quarantined: smells of smoke \(an admin sets it back with jigctl dut state rpi4-a good\)/,
    );
    await admin.jig.setState('rpi4-a', 'good');
  });

  it('runs a failing check before a waiting claim, quarantines the DUT, and names the job', async () => {
    const op = t.client('operator');
    const op2 = t.client('operator2');
    const first = await op.leases.claim({ dut: 'flaky', ttlMs: TTL });
    let served = false;
    const waiting = op2.leases.claim({ dut: 'flaky', ttlMs: TTL, waitMs: 30_000 }).then((l) => {
      served = true;
      return l;
    });
    await waitUntil('the claim to queue', () => t.agent.leases.queue('flaky').waiting === 1);
    await op.leases.release(first.id);
    await waitUntil('the health check to end', () => healthOf(t, 'flaky').lastCheckJobId !== '', 20_000);

    const viewer = t.client('viewer');
    const dut = (await viewer.jig.duts()).find((d) => d.name === 'flaky')!;
    assert.equal(dut.health, DutHealth.DUT_HEALTH_BAD);
    assert.equal(dut.healthChangedBy, HEALTH_HOLDER);
    assert.equal(dut.healthCheckPassed, false);
    assert.ok(dut.lastHealthCheck);
    const job = dut.healthCheckJob;
    assert.match(job, /^[0-9a-f-]{36}$/);
    assert.equal(dut.healthReason, `the health check exited with code 3 (job ${job})`);
    const log = await collect(viewer, job);
    assert.equal(log.stderr.toString(), 'no login prompt\n', 'jigctl logs JOB shows why');
    assert.equal((await viewer.get(job)).owner, HEALTH_HOLDER);

    assert.equal(served, false, 'the waiter did not get a DUT that failed its check');
    assert.equal(t.agent.leases.queue('flaky').waiting, 1, 'it keeps waiting');
    const refused = await errorOf(op.leases.claim({ dut: 'flaky', ttlMs: TTL }));
    assert.match(
      refused.message,
      new RegExp(`flaky is quarantined: the health check exited with code 3 \\(job ${job}\\)`),
    );

    await t.client('admin').jig.setState('flaky', 'good', 'reseated the board');
    const lease = await waiting;
    assert.equal(lease.holder, 'operator2');
    await op2.leases.release(lease.id);
    // That release counted as a job: the next check is due, and quarantines it again.
    await waitUntil('the next check', () => healthOf(t, 'flaky').lastCheckJobId !== job, 20_000);
    assert.equal(healthOf(t, 'flaky').state, 'bad');
    await t.client('admin').jig.setState('flaky', 'good');
  });

  it('runs a passing check before the waiting claim, keeps the DUT good and records the job', async () => {
    const op = t.client('operator');
    const op2 = t.client('operator2');
    const first = await op.leases.claim({ dut: 'sturdy', ttlMs: TTL });
    const waiting = op2.leases.claim({ dut: 'sturdy', ttlMs: TTL, waitMs: 30_000 });
    await waitUntil('the claim to queue', () => t.agent.leases.queue('sturdy').waiting === 1);
    await op.leases.release(first.id);
    const lease = await waiting;
    // The waiter was served only once the check had run and given its lease back.
    const health = healthOf(t, 'sturdy');
    assert.equal(health.state, 'good');
    assert.equal(health.lastCheckPassed, true);
    assert.ok(health.lastCheckAt > 0 && health.lastCheckAt <= Date.now());
    assert.equal(health.leasesSinceCheck, 0);
    const dut = (await op.jig.duts()).find((d) => d.name === 'sturdy')!;
    assert.equal(dut.health, DutHealth.DUT_HEALTH_GOOD);
    assert.equal(dut.healthCheckJob, health.lastCheckJobId);
    assert.equal(dut.healthCheckPassed, true);
    const out = (await collect(op, dut.healthCheckJob)).stdout.toString();
    assert.match(
      out,
      /^sturdy 1 [0-9a-f-]{36} from-yaml\n$/,
      'the check gets its DUT, its flag, its lease and its env',
    );
    assert.ok(lease.fencingToken > 0n);
    await op2.leases.release(lease.id);
  });

  it('runs a check every N hours from a timer', async () => {
    await waitUntil('the timed check', () => healthOf(t, 'hourly').lastCheckAt > 0, 20_000);
    assert.equal(healthOf(t, 'hourly').lastCheckPassed, true);
    assert.equal(healthOf(t, 'hourly').state, 'good');
  });

  it('runs a check on request (admin) and waits for its result', async () => {
    const admin = t.client('admin');
    const passed = await admin.jig.checkHealth('sturdy');
    assert.equal(passed.passed, true);
    assert.equal(passed.dut.healthCheckJob, passed.jobId);
    const failed = await admin.jig.checkHealth('flaky');
    assert.equal(failed.passed, false);
    assert.equal(failed.dut.health, DutHealth.DUT_HEALTH_BAD);
    assert.match(failed.dut.healthReason, new RegExp(`exited with code 3 \\(job ${failed.jobId}\\)`));
    await admin.jig.setState('flaky', 'good');

    const none = await errorOf(admin.jig.checkHealth('rpi4-a'));
    assert.equal(none.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(none.message, /rpi4-a has no health check: add healthCheck .* in health-lab\.yaml/);
    const op = t.client('operator');
    const lease = await op.leases.claim({ dut: 'sturdy', ttlMs: TTL });
    const leased = await errorOf(admin.jig.checkHealth('sturdy'));
    assert.equal(leased.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(leased.message, /sturdy is leased by operator until .*; check it once that lease has ended/);
    await op.leases.release(lease.id);
  });

  it('lets only admins set states or run checks', async () => {
    for (const who of ['operator', 'viewer']) {
      const c = t.client(who);
      const set = await errorOf(c.jig.setState('rpi4-a', 'maintenance', 'mine now'));
      assert.equal(set.code, 'JIGLET_E_PERMISSION_DENIED');
      assert.match(
        set.message,
        new RegExp(
          `${who} \\(role ${who}\\) may not set a DUT's health, run its health check or forget its SSH host key; that needs a certificate with the admin role$`,
        ),
      );
      const check = await errorOf(c.jig.checkHealth('sturdy'));
      assert.equal(check.code, 'JIGLET_E_PERMISSION_DENIED');
    }
    assert.equal(healthOf(t, 'rpi4-a').state, 'good');
  });

  it('refuses an unknown DUT and an unspecified state', async () => {
    const admin = t.client('admin');
    const unknown = await errorOf(admin.jig.setState('nope', 'good'));
    assert.equal(unknown.code, 'JIGLET_E_NOT_FOUND');
    assert.match(unknown.message, /no DUT "nope" on this jig \(there are: rpi4-a, rpi4-b/);
    assert.equal((await errorOf(admin.jig.checkHealth('nope'))).code, 'JIGLET_E_NOT_FOUND');

    // What the client library would never send: a state of 0, and a reason too long to be one.
    const settings = t.pki.as('admin', t.address);
    const raw = new JigServiceClient(
      settings.server,
      credentials.createSsl(
        readFileSync(settings.ca),
        readFileSync(settings.key),
        readFileSync(settings.cert),
      ),
    );
    const call = (state: number, reason: string): Promise<JigletError | null> =>
      new Promise((resolve) =>
        raw.setDutState({ dut: 'rpi4-a', state, reason }, (err) => resolve(err ? fromGrpcError(err) : null)),
      );
    try {
      const unspecified = await call(0, '');
      assert.equal(unspecified?.code, 'JIGLET_E_INVALID_ARGUMENT');
      assert.match(unspecified?.message ?? '', /DUT state 0 is not one of good, bad, maintenance/);
      assert.equal((await call(42, ''))?.code, 'JIGLET_E_INVALID_ARGUMENT');
      assert.equal((await call(3, 'x'.repeat(5000)))?.code, 'JIGLET_E_INVALID_ARGUMENT');
    } finally {
      raw.close();
    }
    assert.equal(healthOf(t, 'rpi4-a').state, 'good');
  });
});

describe('DUT health across a restart', function () {
  this.timeout(60_000);
  let stateDir: string;
  let marks: string;
  let t: TestAgent | undefined;
  const jig = (): JigDescription =>
    jigOf([
      { name: 'rpi4-a' },
      { name: 'twice', healthCheck: { command: ['sh', '-c', 'exit 3'], everyJobs: 2 } },
      {
        // Hangs the first time (the agent is stopped under it), passes the second.
        name: 'slow',
        healthCheck: {
          command: ['sh', '-c', 'if [ -e "$MARK" ]; then exit 0; fi; : > "$MARK"; exec sleep 600'],
          env: { MARK: join(marks, 'slow-ran') },
          everyJobs: 1,
        },
      },
    ]);
  before(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'jiglet-health-state-'));
    marks = mkdtempSync(join(tmpdir(), 'jiglet-health-marks-'));
  });
  after(async () => {
    await t?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(marks, { recursive: true, force: true });
  });

  it('keeps states and job counts, and re-runs a check the agent was stopped in', async () => {
    t = await startTestAgent({ stateDir, jig: jig() });
    const admin = t.client('admin');
    const op = t.client('operator');
    await admin.jig.setState('rpi4-a', 'maintenance', 'rewiring the relay');
    await op.leases.release((await op.leases.claim({ dut: 'twice', ttlMs: TTL })).id);
    assert.equal(healthOf(t, 'twice').leasesSinceCheck, 1);
    await op.leases.release((await op.leases.claim({ dut: 'slow', ttlMs: TTL })).id);
    // Running for real (past the shim), not only spawned: its mark is there.
    await waitUntil('the slow check to run', () => existsSync(join(marks, 'slow-ran')));
    assert.equal(t.agent.leases.list().find((l) => l.dut === 'slow')?.holder, HEALTH_HOLDER);
    await t.stop();

    t = await startTestAgent({ stateDir, jig: jig() });
    const viewer = t.client('viewer');
    const rpi = (await viewer.jig.duts()).find((d) => d.name === 'rpi4-a')!;
    assert.equal(rpi.health, DutHealth.DUT_HEALTH_MAINTENANCE);
    assert.equal(rpi.healthReason, 'rewiring the relay');
    assert.equal(rpi.healthChangedBy, 'admin');
    const op2 = t.client('operator');
    const refused = await errorOf(op2.leases.claim({ dut: 'rpi4-a', ttlMs: TTL }));
    assert.match(refused.message, /rpi4-a is in maintenance: rewiring the relay/);

    // The interrupted check gave its lease back and ran again.
    await waitUntil('the slow check to run again', () => healthOf(t!, 'slow').lastCheckJobId !== '', 20_000);
    assert.equal(healthOf(t, 'slow').lastCheckPassed, true);
    assert.equal(healthOf(t, 'slow').state, 'good');
    assert.notEqual(t.agent.leases.list().find((l) => l.dut === 'slow')?.holder, HEALTH_HOLDER);

    // The count went on from 1: the second lease makes the check due.
    assert.equal(healthOf(t, 'twice').leasesSinceCheck, 1);
    await op2.leases.release((await op2.leases.claim({ dut: 'twice', ttlMs: TTL })).id);
    await waitUntil(
      'the check after the second lease',
      () => healthOf(t!, 'twice').lastCheckJobId !== '',
      20_000,
    );
    assert.equal(healthOf(t, 'twice').state, 'bad');
  });
});
