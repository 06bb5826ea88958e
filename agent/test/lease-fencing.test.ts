/**
 * A lease is not a bearer token (issue 11), over real gRPC with real certificates: operator B
 * sending operator A's lease id is refused on every mutating call, naming A; an admin does not
 * borrow a lease either; lease ids are shown only to their holder and to admins; and when a lease
 * ends, what was started under it ends too (jobs, the console writer).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConsoleSession } from '../../client/src/jig-client.js';
import type { JigletClient } from '../../client/src/jiglet-client.js';
import type { LeaseEvent } from '../../client/src/lease-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import type { JigletError } from '../../protocol/src/errors.js';
import { LeaseManager } from '../src/leases/lease-manager.js';

/** The identities of the test PKI: two operators, an admin, a viewer. */
const ALICE = 'operator';
const BOB = 'operator2';

/** Reads a console's output until the agent ends the session (the call is over then); how it ended. */
async function endOf(session: ConsoleSession): Promise<JigletError | undefined> {
  try {
    for await (const _ of session.output);
  } catch (err) {
    return err as JigletError;
  }
  return undefined;
}

describe('lease fencing', function () {
  this.timeout(30_000);
  let v: VirtualJig;
  let alice: JigletClient;
  let bob: JigletClient;
  let admin: JigletClient;
  let viewer: JigletClient;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }]);
    alice = v.t.client(ALICE);
    bob = v.t.client(BOB);
    admin = v.t.client('admin');
    viewer = v.t.client('viewer');
  });
  afterEach(async () => {
    for (const c of [alice, bob, admin]) c.lease = undefined;
    for (const l of await admin.leases.list()) await admin.leases.release(l.id);
  });
  after(async () => {
    await v?.stop();
  });

  it('refuses B and an admin using A’s lease id, naming A, and changes nothing', async () => {
    const lease = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    const powerBefore = v.dut('vdut-a').power;
    bob.lease = lease.id;
    const refusals: [string, Promise<unknown>][] = [
      ['power cycle', bob.jig.power('vdut-a', 'cycle')],
      ['StartJob --dut', bob.start({ command: 'true', dut: 'vdut-a' })],
      ['Console', bob.jig.console('vdut-a')],
      ['Flash', bob.jig.flash('vdut-a', { imageSha256: 'a'.repeat(64), verify: true })],
    ];
    for (const [what, call] of refusals) {
      const err = await errorOf(call);
      assert.equal(err.code, 'JIGLET_E_PERMISSION_DENIED', `${what}: ${err.message}`);
      assert.match(
        err.message,
        new RegExp(
          `^vdut-a is leased by ${ALICE} until \\d\\d:\\d\\d:\\d\\dZ; a lease works only for its holder, not for ${BOB}: wait for it .* or ask an admin to release it$`,
        ),
        what,
      );
      assert.ok(!err.message.includes(lease.id), `${what}: the refusal does not echo the id`);
    }
    // An admin does not borrow a lease either: it is told to end it first.
    admin.lease = lease.id;
    const byAdmin = await errorOf(admin.jig.power('vdut-a', 'off'));
    assert.equal(byAdmin.code, 'JIGLET_E_PERMISSION_DENIED');
    assert.match(byAdmin.message, new RegExp(`leased by ${ALICE} .*jigctl release ${lease.id}`));
    // Without the lease, B hears whose it is and what to do, and still may read.
    bob.lease = undefined;
    const without = await errorOf(bob.jig.power('vdut-a', 'on'));
    assert.equal(without.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(without.message, new RegExp(`vdut-a is leased by ${ALICE} until .*; wait for it`));

    assert.equal(v.dut('vdut-a').power, powerBefore, 'the DUT was not switched');
    assert.deepEqual(await viewer.list({ owner: BOB }), [], 'no job was started for B');
    assert.equal((await viewer.jig.duts())[0]?.serial?.consoleWriter, '', 'no console was attached');
    assert.equal((await bob.jig.power('vdut-a', 'status')).dut, 'vdut-a', 'reading needs no lease');
    // The holder's own calls still pass.
    alice.lease = lease.id;
    assert.equal((await alice.jig.power('vdut-a', 'on')).state, 'on');
  });

  it('stops the lease’s jobs and detaches its console when the lease ends', async () => {
    // A console attached while the DUT was free lets go once someone else leases it.
    const early = await bob.jig.console('vdut-a');
    const earlyEnd = endOf(early);
    const lease = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    const kicked = await earlyEnd;
    assert.equal(kicked?.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(kicked?.message ?? '', new RegExp(`${ALICE} leased vdut-a`));

    alice.lease = lease.id;
    const jobs = await Promise.all([
      alice.start({ command: 'sleep', args: ['600'], dut: 'vdut-a' }),
      alice.start({ command: 'sleep', args: ['601'], dut: 'vdut-a' }),
    ]);
    const console = await alice.jig.console('vdut-a');
    const consoleEnd = endOf(console);
    assert.equal((await viewer.jig.duts())[0]?.serial?.consoleWriter, ALICE);

    await alice.leases.release(lease.id);
    for (const job of jobs) {
      const { finished } = await collect(viewer, job.id, { follow: true });
      assert.equal(finished?.stopReason, 'lease', `job ${job.id}`);
    }
    const detached = await consoleEnd;
    assert.equal(detached?.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(detached?.message ?? '', new RegExp(`the lease of ${ALICE} on vdut-a ended \\(released\\)`));
    assert.equal((await viewer.jig.duts())[0]?.serial?.consoleWriter, '');
    // The released id is stale for its old holder too.
    const stale = await errorOf(alice.jig.power('vdut-a', 'on'));
    assert.match(stale.message, /no longer valid for vdut-a \(released\)/);
  });

  it('refuses a power action that was queued when its lease ended', async () => {
    const runtime = v.t.agent.jig.get('vdut-a');
    // The safe-state power-off of the last test's lease may still be running.
    await waitUntil('the power queue to be idle', () => runtime.power.busy === 0, 20_000);
    const since = new Date();
    const lease = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    alice.lease = lease.id;
    // A cycle that would hold the power queue for ten minutes: only the lease's end stops it.
    const cycle = errorOf(alice.jig.power('vdut-a', 'cycle', { offTimeMs: 600_000 }));
    const on = errorOf(alice.jig.power('vdut-a', 'on'));
    await waitUntil('the power-on to queue behind the cycle', () => runtime.power.busy === 2, 20_000);
    await alice.leases.release(lease.id);
    // The cycle, started under the lease, is stopped with it; the power-on queued behind never runs.
    const stopped = await cycle;
    const cycleJob = /\(job ([0-9a-f-]+)\)$/.exec(stopped.message)?.[1];
    assert.ok(cycleJob, stopped.message);
    assert.equal((await viewer.get(cycleJob)).stopReason, 'lease');
    const refused = await on;
    assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(refused.message, /lease .* is no longer valid for vdut-a \(released\)/);
    const powerJobs = (await viewer.list({ owner: ALICE })).filter(
      (j) => j.spec?.args.includes('on') && j.createdAt! >= since,
    );
    assert.deepEqual(powerJobs, [], 'no power-on job was started');
  });

  it('shows lease ids only to the holder and admins: list, watch snapshot and every event, run record', async () => {
    const first = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    const watchers = { alice, admin, bob, viewer };
    const stop = new AbortController();
    const streams = Object.fromEntries(
      Object.entries(watchers).map(([name, c]) => [
        name,
        c.leases.watch({ dut: 'vdut-a', signal: stop.signal })[Symbol.asyncIterator](),
      ]),
    );
    const nextOfEach = async (kind: LeaseEvent['kind']): Promise<Record<string, LeaseEvent>> => {
      const seen: Record<string, LeaseEvent> = {};
      for (const [name, stream] of Object.entries(streams)) {
        const { value } = await stream.next();
        assert.equal(value?.kind, kind, `${name} hears ${kind}`);
        seen[name] = value!;
      }
      return seen;
    };
    const assertShown = (events: Record<string, LeaseEvent>, id: string, kind: string): void => {
      for (const [name, e] of Object.entries(events)) {
        const sees = name === 'alice' || name === 'admin';
        assert.equal(e.lease?.id, sees ? id : '', `${name}, ${kind}`);
        assert.equal(e.lease?.holder, ALICE, `${name} sees the holder (${kind})`);
        assert.equal(e.lease?.dut, 'vdut-a', `${name} sees the DUT (${kind})`);
        assert.ok(e.lease?.expires, `${name} sees the expiry (${kind})`);
      }
    };
    try {
      assertShown(await nextOfEach('held'), first.id, 'held');
      await alice.leases.renew(first.id);
      assertShown(await nextOfEach('renewed'), first.id, 'renewed');
      alice.lease = first.id;
      const job = await alice.start({ command: 'true', dut: 'vdut-a' });
      await collect(alice, job.id, { follow: true });
      await alice.leases.release(first.id);
      assertShown(await nextOfEach('released'), first.id, 'released');
      const second = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
      assertShown(await nextOfEach('granted'), second.id, 'granted');

      for (const [name, c] of Object.entries(watchers)) {
        const [listed] = await c.leases.list();
        const sees = name === 'alice' || name === 'admin';
        assert.equal(listed?.id, sees ? second.id : '', `ListLeases as ${name}`);
        assert.equal(listed?.holder, ALICE);

        // The run record: the lease a job ran under, and the lease's own events.
        const byJob = await c.records.timeline({ jobId: job.id }, { includeSerial: false });
        const span = byJob.leases.find((l) => l.fencingToken === first.fencingToken);
        assert.equal(span?.holder, ALICE);
        assert.equal(span?.leaseId, sees ? first.id : '', `timeline lease span as ${name}`);
        const byLease = await c.records.timeline({ leaseId: first.id }, { includeSerial: false });
        const leaseEvents = byLease.events.filter((e) => e.fields.change !== undefined);
        assert.deepEqual(
          leaseEvents.map((e) => e.fields.change),
          ['granted', 'ended'],
        );
        for (const e of leaseEvents) {
          assert.equal(e.fields.holder, ALICE);
          assert.equal(e.fields.lease, sees ? first.id : undefined, `timeline lease event as ${name}`);
          assert.ok(!e.summary.includes(first.id.slice(0, 8)), `summary as ${name}`);
        }
      }
      // Bob's own lease is his to see.
      await alice.leases.release(second.id);
      await nextOfEach('released');
      const bobs = await bob.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
      const granted = await nextOfEach('granted');
      assert.equal(granted.bob?.lease?.id, bobs.id);
      assert.equal(granted.alice?.lease?.id, '');
    } finally {
      stop.abort();
    }
  });
});

describe('lease manager: work bound to a lease', () => {
  it('hands bound jobs to the end, refuses to bind to an ended lease, and lends only the agent’s own lease', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jiglet-leases-'));
    const m = new LeaseManager({ stateDir: dir });
    try {
      const lease = await m.claim({ duts: ['rpi'], holder: 'alice', ttlMs: 60_000 });
      assert.equal(m.bind(lease.id, 'job-1'), true);
      assert.equal(m.bind(lease.id, 'job-2'), true);
      assert.equal(m.bind(lease.id, 'job-3'), true);
      m.unbind(lease.id, 'job-2'); // ended on its own
      const ended = new Promise<unknown[]>((resolve) => m.once('ended', (...args) => resolve(args)));
      m.release(lease.id, 'alice');
      const [, reason, jobs] = await ended;
      assert.equal(reason, 'released');
      assert.deepEqual(jobs, ['job-1', 'job-3']);
      assert.equal(m.bind(lease.id, 'job-4'), false, 'a job started as the lease ended is not bound');
      // The agent's own lease (a health check's) counts for the certificate its check runs with.
      const check = m.seize('rpi', '@jiglet-health', 60_000);
      assert.equal(m.check('rpi', check.id, { name: 'health-bot', role: 'operator' })?.id, check.id);
      assert.throws(
        () => m.check('rpi', undefined, { name: 'health-bot', role: 'operator' }),
        /leased by @jiglet-health/,
      );
    } finally {
      m.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
