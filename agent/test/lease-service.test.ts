/**
 * Leases over gRPC on a virtual jig: a leased DUT obeys only its lease; a stale or foreign lease
 * is refused with the reason; when a lease expires under a running job, the job is stopped and
 * the DUT put in its safe state (power off), while viewers keep reading.
 */
import assert from 'node:assert/strict';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { AGENT_OWNER } from '../src/jig/job-keeper.js';

describe('leases on a virtual jig', function () {
  this.timeout(30_000);
  let v: VirtualJig;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }, { name: 'vdut-b' }]);
  });
  after(async () => {
    await v?.stop();
  });

  it('makes a leased DUT obey only its lease, and refuses stale or foreign ones', async () => {
    const alice = v.t.client('operator');
    const bob = v.t.client('operator2');
    const lease = await alice.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    assert.equal(lease.holder, 'operator');
    const without = await errorOf(bob.jig.power('vdut-a', 'on'));
    assert.equal(without.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(without.message, /vdut-a is leased by operator until \d\d:\d\d:\d\dZ; wait for it/);
    assert.equal((await bob.jig.power('vdut-a', 'status')).dut, 'vdut-a', 'reading needs no lease');
    const busy = await errorOf(bob.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 }));
    assert.match(busy.message, /vdut-a is leased by operator until/);

    alice.lease = lease.id;
    assert.equal((await alice.jig.power('vdut-a', 'on')).state, 'on');
    const jobWithout = await errorOf(bob.start({ command: 'true', dut: 'vdut-a' }));
    assert.equal(jobWithout.code, 'JIGLET_E_FAILED_PRECONDITION');
    const other = await bob.leases.claim({ labels: { 'device-type': 'virtual' }, ttlMs: 60_000 });
    assert.equal(other.dut, 'vdut-b', 'a label claim takes the free DUT');
    bob.lease = other.id;
    const foreign = await errorOf(bob.jig.power('vdut-a', 'off'));
    assert.match(foreign.message, new RegExp(`lease ${other.id} is for vdut-b, not vdut-a`));
    const notYours = await errorOf(bob.leases.release(lease.id));
    assert.match(notYours.message, /belongs to operator/);

    await alice.leases.release(lease.id);
    const stale = await errorOf(alice.jig.power('vdut-a', 'on'));
    assert.ok(
      stale.code === undefined ||
        stale.code !== 'JIGLET_E_FAILED_PRECONDITION' ||
        /no longer valid/.test(stale.message),
    );
    await bob.leases.release(other.id);
    alice.lease = undefined;
    bob.lease = undefined;
    assert.deepEqual(await v.t.client('viewer').leases.list(), []);
  });

  it('stops the holder’s job and powers the DUT off when the lease expires', async () => {
    const op = v.t.client('operator');
    await op.withLease({ dut: 'vdut-a', ttlMs: 60_000 }, async () => {
      await op.jig.power('vdut-a', 'on');
    });
    // The agent's own power-off, published once the agent has recorded the state it reached.
    const safe = new Promise<void>((resolve) => {
      const stop = v.t.agent.jig.events.subscribe((e) => {
        if (e.kind === 'power' && e.dut === 'vdut-a' && e.by === AGENT_OWNER && e.state === 'off') {
          stop();
          resolve();
        }
      });
    });
    const lease = await op.leases.claim({ dut: 'vdut-a', ttlMs: 5000 });
    op.lease = lease.id;
    const job = await op.start({ command: 'sleep', args: ['600'], dut: 'vdut-a' });
    op.lease = undefined;
    // The lease is not renewed: it expires, the job is stopped, the DUT goes to its safe state.
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.stopReason, 'lease');
    await safe;
    const power = (await op.jig.duts()).find((d) => d.name === 'vdut-a')?.power?.state;
    assert.equal(v.dut('vdut-a').power, 'off');
    assert.equal(power, 2 /* POWER_STATE_OFF */);
  });

  it('gives 100 concurrent claimers over gRPC one DUT one at a time, round after round', async function () {
    this.timeout(120_000);
    const clients = Array.from({ length: 100 }, () => v.t.client('operator'));
    const tokens: number[] = [];
    const spent: string[] = [];
    let holding = 0;
    let most = 0;
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        clients.map(async (c) => {
          const lease = await c.leases.claim({ dut: 'vdut-b', ttlMs: 60_000, waitMs: 100_000 });
          holding++;
          most = Math.max(most, holding);
          tokens.push(Number(lease.fencingToken));
          // A round trip while holding, so a second holder would have time to show up.
          await c.leases.renew(lease.id);
          holding--;
          await c.leases.release(lease.id);
          spent.push(lease.id);
        }),
      );
    }
    assert.equal(most, 1, 'never two holders');
    assert.equal(tokens.length, 300);
    assert.deepEqual(
      tokens,
      [...tokens].sort((a, b) => a - b),
      'tokens increase in grant order',
    );
    assert.equal(new Set(tokens).size, 300, 'no token is handed out twice');
    const stale = clients[0]!;
    stale.lease = spent[0];
    const refused = await errorOf(stale.jig.power('vdut-b', 'on'));
    assert.equal(refused.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(refused.message, /no longer valid for vdut-b \(released\)/);
    stale.lease = undefined;
  });

  it('streams lease events to watchers: what is held, then every change', async () => {
    const op = v.t.client('operator');
    const held = await op.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    const stop = new AbortController();
    const events = op.leases.watch({ signal: stop.signal })[Symbol.asyncIterator]();
    const next = async (): Promise<string> => {
      const { value } = await events.next();
      return `${value?.kind} ${value?.dut} ${value?.kind === 'waiting' ? value.waiting : value?.lease?.holder}`;
    };
    assert.equal(await next(), 'held vdut-a operator');
    const other = v.t.client('operator2');
    const waiting = other.leases.claim({ dut: 'vdut-a', ttlMs: 60_000, waitMs: 10_000 });
    assert.equal(await next(), 'waiting vdut-a 1');
    await op.leases.release(held.id);
    assert.equal(await next(), 'released vdut-a operator');
    assert.equal(await next(), 'waiting vdut-a 0');
    assert.equal(await next(), 'granted vdut-a operator2');
    await other.leases.release((await waiting).id);
    assert.equal(await next(), 'released vdut-a operator2');
    stop.abort();
    assert.equal((await events.next()).done, true, 'aborting ends the watch');
    const unknown = await errorOf(
      (async () => {
        for await (const _ of op.leases.watch({ dut: 'nope' })) break;
      })(),
    );
    assert.equal(unknown.code, 'JIGLET_E_NOT_FOUND');
  });

  it('refuses bad claims with a clear reason', async () => {
    const op = v.t.client('operator');
    for (const ttlMs of [0, -5, 25 * 3600 * 1000]) {
      const bad = await errorOf(op.leases.claim({ dut: 'vdut-a', ttlMs }));
      assert.equal(bad.code, 'JIGLET_E_INVALID_ARGUMENT', `ttl ${ttlMs}`);
    }
    assert.match(
      (await errorOf(op.leases.claim({ dut: 'vdut-a', ttlMs: 0 }))).message,
      /the lease TTL must be between 1s and 24h; got 0s/,
    );
    assert.equal(
      (await errorOf(op.leases.claim({ dut: 'vdut-a', labels: { a: 'b' } }))).code,
      'JIGLET_E_INVALID_ARGUMENT',
    );
    assert.equal((await errorOf(op.leases.claim({ labels: { site: 'mars' } }))).code, 'JIGLET_E_NOT_FOUND');
    assert.equal((await errorOf(op.leases.claim({}))).code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.equal(
      (await errorOf(v.t.client('viewer').leases.claim({ dut: 'vdut-a' }))).code,
      'JIGLET_E_PERMISSION_DENIED',
    );
  });
});
