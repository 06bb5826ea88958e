/**
 * The lease core: never two holders, fencing tokens that only increase (also across a restart),
 * expiry, priority-then-FIFO waiting, and stale or foreign leases refused with the reason.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { type Lease, LeaseManager } from '../src/leases/lease-manager.js';

describe('lease manager', () => {
  let dir: string;
  let managers: LeaseManager[];
  const open = (): LeaseManager => {
    const m = new LeaseManager({ stateDir: dir });
    managers.push(m);
    return m;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-leases-'));
    managers = [];
  });
  afterEach(() => {
    for (const m of managers) m.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets 100 concurrent claimers hold one DUT one at a time, with ever-increasing tokens', async () => {
    const m = open();
    let holders = 0;
    let most = 0;
    const tokens: number[] = [];
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const lease = await m.claim({ duts: ['rpi'], holder: `ci-${i}`, ttlMs: 60_000, waitMs: 30_000 });
        holders++;
        most = Math.max(most, holders);
        tokens.push(lease.token);
        // A stale token of the previous holder is refused while this one holds the DUT.
        const caller = { name: lease.holder, role: 'operator' } as const;
        if (lease.token > 1)
          assert.throws(() => m.check('rpi', 'previous', caller), /no longer valid for rpi/);
        m.check('rpi', lease.id, caller);
        await new Promise((resolve) => setImmediate(resolve));
        holders--;
        m.release(lease.id, lease.holder);
      }),
    );
    assert.equal(most, 1);
    assert.deepEqual(
      tokens,
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
  });

  it('serves waiting claims by priority, then in arrival order', async () => {
    const m = open();
    const first = await m.claim({ duts: ['bbb'], holder: 'a', ttlMs: 60_000 });
    const order: string[] = [];
    const wait = (holder: string, priority: number) =>
      m.claim({ duts: ['bbb'], holder, ttlMs: 60_000, waitMs: 10_000, priority }).then((l) => {
        order.push(holder);
        m.release(l.id, holder);
      });
    const all = Promise.all([wait('low-1', 0), wait('high', 5), wait('low-2', 0)]);
    assert.deepEqual(m.queue('bbb', 'low-2'), { waiting: 3, position: 3 });
    m.release(first.id, 'a');
    await all;
    assert.deepEqual(order, ['high', 'low-1', 'low-2']);
  });

  it('gives a claim for several DUTs whichever frees first, and never a gated one', async () => {
    const m = open();
    const closed = new Set(['c']);
    m.setGate((dut) => (closed.has(dut) ? `${dut} is in maintenance` : undefined));
    const gated = await errorOf(m.claim({ duts: ['c'], holder: 'x', ttlMs: 60_000 }));
    assert.match(gated.message, /c is in maintenance/);
    const a = await m.claim({ duts: ['a', 'b', 'c'], holder: 'one', ttlMs: 60_000 });
    const b = await m.claim({ duts: ['a', 'b', 'c'], holder: 'two', ttlMs: 60_000 });
    assert.deepEqual([a.dut, b.dut], ['a', 'b'], 'the gated DUT is skipped');
    const waiting = m.claim({ duts: ['a', 'b', 'c'], holder: 'three', ttlMs: 60_000, waitMs: 10_000 });
    assert.equal(m.queue('b', 'three').position, 1);
    m.release(b.id, 'two');
    assert.equal((await waiting).dut, 'b', 'the waiter takes the DUT that freed first, not its first choice');
    const forC = m.claim({ duts: ['c'], holder: 'four', ttlMs: 60_000, waitMs: 10_000 });
    closed.delete('c');
    m.retry('c');
    assert.equal((await forC).dut, 'c', 'a DUT back from maintenance serves its waiting claim');
  });

  it('tells watchers of every grant, renewal, end and waiting line', async () => {
    const m = open();
    const seen: string[] = [];
    m.on('change', (c: import('../src/leases/lease-manager.js').LeaseChange) =>
      seen.push(c.kind === 'waiting' ? `waiting:${c.dut}:${c.waiting}` : `${c.kind}:${c.lease.holder}`),
    );
    const first = await m.claim({ duts: ['a'], holder: 'one', ttlMs: 60_000 });
    m.renew(first.id, 'one');
    const next = m.claim({ duts: ['a'], holder: 'two', ttlMs: 60_000, waitMs: 10_000 });
    m.release(first.id, 'one');
    await next;
    assert.deepEqual(seen, [
      'granted:one',
      'renewed:one',
      'waiting:a:1',
      'ended:one',
      'waiting:a:0',
      'granted:two',
    ]);
  });

  it('expires a lease that is not renewed, and says why its id no longer works', async () => {
    const m = open();
    const lease = await m.claim({ duts: ['imx'], holder: 'ci', ttlMs: 1000 });
    const [ended, reason] = (await once(m, 'ended')) as [Lease, string];
    assert.equal(ended.id, lease.id);
    assert.equal(reason, 'expired');
    m.check('imx', undefined, { name: 'ci', role: 'operator' }); // free again
    assert.equal(
      (await errorOf(Promise.resolve().then(() => m.renew(lease.id, 'ci')))).code,
      'JIGLET_E_NOT_FOUND',
    );
  });

  it('keeps leases and never reuses a token across a restart', async () => {
    const m1 = open();
    const a = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    m1.release(a.id, 'ci');
    const b = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    m1.close();
    const m2 = open();
    assert.deepEqual(
      m2.list().map((l) => [l.id, l.token, l.expiresAt]),
      [[b.id, 2, b.expiresAt]],
    );
    m2.release(b.id, 'ci');
    assert.equal((await m2.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 })).token, 3);
  });

  it('refuses bad TTLs, someone else’s lease, and a lease for another DUT', async () => {
    const m = open();
    for (const ttlMs of [0, -5, 25 * 3600 * 1000, 1.5]) {
      assert.equal(
        (await errorOf(m.claim({ duts: ['x'], holder: 'ci', ttlMs }))).code,
        'JIGLET_E_INVALID_ARGUMENT',
      );
    }
    const lease = await m.claim({ duts: ['x'], holder: 'alice', ttlMs: 60_000 });
    await m.claim({ duts: ['y'], holder: 'bob', ttlMs: 60_000 });
    assert.throws(() => m.release(lease.id, 'bob'), /belongs to alice/);
    const alice = { name: 'alice', role: 'operator' } as const;
    assert.throws(() => m.check('y', lease.id, alice), new RegExp(`lease ${lease.id} is for x, not y`));
    assert.throws(
      () => m.check('x', undefined, alice),
      /leased by you \(alice\): the call must carry its lease/,
    );
    const busy = await errorOf(m.claim({ duts: ['x'], holder: 'bob', ttlMs: 60_000 }));
    assert.match(busy.message, /x is leased by alice until/);
    const revoked = once(m, 'ended');
    m.release(lease.id, 'admin', { revoke: true });
    assert.equal((await revoked)[1], 'revoked');
  });

  it('never renews a lease past the configured maximum lifetime, and refuses a longer TTL', async () => {
    let now = 1_000_000;
    const m = new LeaseManager({ stateDir: dir, maxLifetimeMs: 10_000, now: () => now });
    managers.push(m);
    const tooLong = await errorOf(m.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 20_000 }));
    assert.match(tooLong.message, /the lease TTL must be between 1s and 10s; got 20s/);
    const lease = await m.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 4000 });
    now += 3000;
    assert.equal(m.renew(lease.id, 'ci').expiresAt, now + 4000);
    now += 5000;
    assert.equal(m.renew(lease.id, 'ci').expiresAt, 1_010_000, 'renewal stops at the maximum');
  });

  it('keeps leases and tokens through journal folds and a torn last line', async () => {
    const m1 = open();
    // 700 claim/release pairs: 1400 journal entries, so at least one fold into the snapshot.
    for (let i = 0; i < 700; i++) {
      const l = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
      m1.release(l.id, 'ci');
    }
    const held = await m1.claim({ duts: ['bbb'], holder: 'ci', ttlMs: 60_000 });
    m1.renew(held.id, 'ci');
    m1.close();
    // A crash in the middle of writing an entry leaves half a line behind.
    appendFileSync(join(dir, 'leases.jsonl'), '{"op":"grant","lease":{"id":"x","du');
    const m2 = open();
    assert.deepEqual(
      m2.list().map((l) => [l.id, l.token]),
      [[held.id, 1]],
    );
    assert.equal((await m2.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 })).token, 701);
    m2.close();
    assert.equal(
      open()
        .list()
        .find((l) => l.dut === 'rpi')?.token,
      701,
      'the entry written after the torn line is kept',
    );
  });

  it('ends, once started, a lease that expired while the agent was down', async () => {
    const m1 = open();
    const lease = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    m1.close();
    const later = new LeaseManager({ stateDir: dir, now: () => Date.now() + 120_000 });
    managers.push(later);
    const ended = once(later, 'ended');
    later.start();
    const [gone, reason] = (await ended) as [Lease, string];
    assert.equal(gone.id, lease.id);
    assert.equal(reason, 'expired');
    assert.deepEqual(later.list(), []);
  });
});
