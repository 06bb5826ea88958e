/**
 * `jigctl dut state` and `jigctl dut check` as an admin uses them, and the health `jigctl jig`
 * shows: a DUT in maintenance or quarantined is named with its reason; a check exits 0 when it
 * passed and 1 when it failed; operators are refused (77), mistakes are usage errors (2).
 */
import assert from 'node:assert/strict';
import { assertOneLineError, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';

interface JsonDut {
  name: string;
  health: { state: string; reason?: string; changedBy?: string; lastCheckJobId?: string; hasCheck: boolean };
}

describe('jigctl dut', function () {
  this.timeout(60_000);
  let t: TestAgent;
  before(async () => {
    const jig = parseJigDescription(
      JSON.stringify({
        duts: [
          { name: 'rpi4-a', labels: { 'device-type': 'rpi4' } },
          { name: 'flaky', healthCheck: { command: ['sh', '-c', 'exit 3'], everyJobs: 1 } },
          { name: 'sturdy', healthCheck: { command: ['true'], everyJobs: 5 } },
        ],
      }),
      'health-lab.yaml',
    );
    t = await startTestAgent({ jig });
  });
  after(async () => {
    await t?.stop();
  });

  it('takes a DUT out of service and back; jig shows the health and why', async () => {
    const set = await runJigctl(t, ['dut', 'state', 'rpi4-a', 'maintenance', '--reason', 'new relay board'], {
      as: 'admin',
    });
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^rpi4-a: maintenance \(set by admin at .*\): new relay board\n$/);

    const [table, json] = await Promise.all([
      runJigctl(t, ['jig'], { as: 'viewer' }),
      runJigctl(t, ['jig', '-o', 'json'], { as: 'viewer' }),
    ]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^DUT +HEALTH +POWER .*\nrpi4-a +maintenance +.*device-type=rpi4/);
    assert.match(table.stdout, /^flaky +good /m);
    assert.match(table.stdout, /^rpi4-a: maintenance \(set by admin at .*\): new relay board$/m);
    const duts = JSON.parse(json.stdout) as JsonDut[];
    assert.deepEqual(
      duts.map((d) => [d.name, d.health.state, d.health.reason, d.health.hasCheck]),
      [
        ['rpi4-a', 'maintenance', 'new relay board', false],
        ['flaky', 'good', undefined, true],
        ['sturdy', 'good', undefined, true],
      ],
    );

    const claim = await runJigctl(t, ['claim', '--dut', 'rpi4-a']);
    assert.equal(claim.code, 1);
    assert.match(claim.stderr, /rpi4-a is in maintenance: new relay board/);

    const back = await runJigctl(t, ['dut', 'state', 'rpi4-a', 'good', '-o', 'json'], { as: 'admin' });
    assert.equal(back.code, 0, back.stderr);
    assert.equal((JSON.parse(back.stdout) as JsonDut).health.state, 'good');
  });

  it('quarantines a DUT whose check fails after a job, and a check exits with its verdict', async () => {
    const claimed = await runJigctl(t, ['claim', '--dut', 'flaky']);
    assert.equal(claimed.code, 0, claimed.stderr);
    assert.equal((await runJigctl(t, ['release', claimed.stdout.trim()])).code, 0);
    // The check after that job runs by itself; `dut check` now joins it, or runs one more.
    const check = await runJigctl(t, ['dut', 'check', 'flaky'], { as: 'admin' });
    assert.equal(check.code, 1, check.stderr);
    const job = /^flaky: health check failed \(job ([0-9a-f-]{36})\)\n/.exec(check.stdout)?.[1];
    assert.ok(job, check.stdout);
    assert.match(
      check.stdout,
      /\nflaky: bad \(set by @jiglet-health at .*\): the health check exited with code 3 \(job /,
    );

    const table = await runJigctl(t, ['jig'], { as: 'viewer' });
    assert.match(table.stdout, /^flaky +bad /m);
    assert.match(table.stdout, /^flaky: bad .*: the health check exited with code 3 \(job [0-9a-f-]{36}\)$/m);
    const refused = await runJigctl(t, ['claim', '--dut', 'flaky']);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /flaky is quarantined: .*\(an admin sets it back with jigctl dut state flaky good\)/,
    );
    assert.equal((await runJigctl(t, ['dut', 'state', 'flaky', 'good'], { as: 'admin' })).code, 0);

    const passed = await runJigctl(t, ['dut', 'check', 'sturdy', '-o', 'json'], { as: 'admin' });
    assert.equal(passed.code, 0, passed.stderr);
    const report = JSON.parse(passed.stdout) as { passed: boolean; jobId: string; health: JsonDut['health'] };
    assert.equal(report.passed, true);
    assert.equal(report.health.state, 'good');
    assert.equal(report.health.lastCheckJobId, report.jobId);
  });

  it('refuses operators, DUTs without a check, unknown DUTs and unknown states', async () => {
    const denied = await runJigctl(t, ['dut', 'state', 'rpi4-a', 'bad']);
    assert.equal(denied.code, 77);
    assertOneLineError(denied);
    assert.match(
      denied.stderr,
      /^jigctl: operator \(role operator\) may not set a DUT's health, run its health check or forget its SSH host key; that needs a certificate with the admin role\n$/,
    );
    assert.equal((await runJigctl(t, ['dut', 'check', 'sturdy'], { as: 'viewer' })).code, 77);

    const none = await runJigctl(t, ['dut', 'check', 'rpi4-a'], { as: 'admin' });
    assert.equal(none.code, 1);
    assertOneLineError(none);
    assert.match(none.stderr, /rpi4-a has no health check/);
    const unknown = await runJigctl(t, ['dut', 'state', 'nope', 'good'], { as: 'admin' });
    assert.equal(unknown.code, 2, 'a DUT that does not exist is a wrong request (README: Exit codes)');
    assert.match(unknown.stderr, /no DUT "nope"/);
    const usage = await runJigctl(t, ['dut', 'state', 'rpi4-a', 'broken'], { as: 'admin' });
    assert.equal(usage.code, 2);
  });
});
