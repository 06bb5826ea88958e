/**
 * `jigctl claim`, `claim --exec`, `release` and `leases` as CI scripts use them: the lease is
 * passed to the command, jigctl commands inside it pick it up, and it is released afterwards.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

describe('jigctl leases', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }]);
  });
  after(async () => {
    await v?.stop();
  });

  it('claims, refuses others without the lease, and releases', async () => {
    const claimed = await runJigctl(v.t, ['claim', '--dut', 'vdut-a', '--ttl', '1m']);
    assert.equal(claimed.code, 0, claimed.stderr);
    const id = claimed.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    // The id is the holder's: the holder sees it, a viewer sees who holds the DUT and until when.
    const mine = await runJigctl(v.t, ['leases', '-o', 'json']);
    assert.equal((JSON.parse(mine.stdout) as { id: string }[])[0]?.id, id);
    const listed = await runJigctl(v.t, ['leases', '-o', 'json'], { as: 'viewer' });
    const seen = (JSON.parse(listed.stdout) as { id: string; holder: string; expires: string }[])[0];
    assert.deepEqual([seen?.id, seen?.holder, typeof seen?.expires], ['', 'operator', 'string']);
    const table = await runJigctl(v.t, ['leases'], { as: 'viewer' });
    assert.match(table.stdout, /\nvdut-a\s+operator\s+\(hidden\)\s+\d+\s+\d\d:\d\d:\d\d \(in (\d+s|1m)\)\n$/);
    const refused = await runJigctl(v.t, ['power', 'on', '--dut', 'vdut-a'], { as: 'operator2' });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /vdut-a is leased by operator until .*; wait for it/);
    const borrowed = await runJigctl(v.t, ['power', 'on', '--dut', 'vdut-a', '--lease', id], {
      as: 'operator2',
    });
    assert.equal(borrowed.code, 77, 'PERMISSION_DENIED: a lease works only for its holder');
    assert.match(borrowed.stderr, /a lease works only for its holder, not for operator2/);
    assert.equal((await runJigctl(v.t, ['power', 'on', '--dut', 'vdut-a', '--lease', id])).code, 0);
    assert.equal((await runJigctl(v.t, ['release', id])).code, 0);
    assert.equal((await runJigctl(v.t, ['leases', '-o', 'json'])).stdout.trim(), '[]');
    assert.equal((await runJigctl(v.t, ['leases'])).stdout, 'no leases held\n');
  });

  it('states the --ttl range in the units a user types', async () => {
    const r = await runJigctl(v.t, ['claim', '--dut', 'vdut-a', '--ttl', '0s']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'jigctl: --ttl must be between 1s and 24h (got 0s)\n');
  });

  it('holds the lease while --exec runs the command, which inherits it, then releases it', async () => {
    const jigctl = `${process.execPath} ${join(import.meta.dirname, '../../dist/bundle/jigctl.js')}`;
    const r = await runJigctl(v.t, [
      'claim',
      '--dut',
      'vdut-a',
      '--exec',
      '--',
      'sh',
      '-c',
      `echo "$JIGLET_DUT $JIGLET_LEASE"; ${jigctl} power off --dut "$JIGLET_DUT" && exit 7`,
    ]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stdout, /^vdut-a [0-9a-f-]{36}\nvdut-a: off/);
    assert.equal((await runJigctl(v.t, ['leases', '-o', 'json'])).stdout.trim(), '[]');
  });
});
