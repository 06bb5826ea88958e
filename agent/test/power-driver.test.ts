/**
 * A DUT's long-lived power driver (issue 13): one `jig-driver power-serve` job serves many actions,
 * a config change starts a fresh one, a driver that misses an action's deadline is stopped (its
 * cgroup with it) and the next action gets a new driver, and a driver that dies says why.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { DriverFailedError } from '../../protocol/src/errors.js';
import { defaultJigDriverCommand, type JigDriverCommand } from '../src/jig/jig-driver-command.js';
import { PowerDriver } from '../src/jig/power-driver.js';
import { runPowerJob } from '../src/jig/power-job.js';
import { detectContainment } from '../src/jobs/containment.js';
import { JobRecords } from '../src/jobs/job-records.js';
import { isFinal } from '../src/jobs/job-state.js';
import { Supervisor } from '../src/jobs/supervisor.js';

describe('long-lived power driver', function () {
  this.timeout(30_000);
  let dir: string;
  let supervisor: Supervisor;
  const log = pino({ level: 'silent' });
  const driver = (jigDriver: JigDriverCommand = defaultJigDriverCommand(), deadlineSlackMs?: number) =>
    new PowerDriver({
      supervisor,
      jigDriver,
      dut: 'bench-a',
      stateDir: dir,
      log,
      ...(deadlineSlackMs === undefined ? {} : { deadlineSlackMs }),
    });
  const sh = (script: string): JigDriverCommand => ({ command: 'sh', args: ['-c', script, 'jig-driver'] });
  const relay = {
    driver: 'command',
    on: 'true',
    off: 'true',
    status: 'echo on',
    statusOnPattern: '^on$',
    offTimeMs: 0,
    timeoutMs: 5000,
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-power-driver-'));
    const containment = await detectContainment({ namespace: `power-driver-${process.pid}`, log: () => {} });
    supervisor = new Supervisor({
      records: new JobRecords(dir),
      containment,
      log,
      baseEnv: { PATH: process.env.PATH ?? '' },
    });
    await supervisor.recover();
  });
  after(async () => {
    await supervisor?.shutdown(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves many actions from one agent job, logs their steps, and restarts on a new config', async () => {
    const power = driver();
    const on = await power.run({ power: relay, action: 'on', owner: 'operator' });
    assert.equal(on.state, 'on');
    const status = await power.run({ power: relay, action: 'status', owner: 'operator' });
    assert.equal(status.state, 'on');
    const cycle = await power.run({ power: relay, action: 'cycle', offTimeMs: 5, owner: 'operator' });
    assert.deepEqual([status.jobId, cycle.jobId], [on.jobId, on.jobId], 'one driver job serves them all');
    const job = supervisor.get(on.jobId);
    assert.equal(job.record.owner, '@jiglet');
    assert.equal(job.record.title, 'power driver for bench-a');
    assert.ok(!isFinal(job.record.state));

    const failing = { ...relay, on: 'echo "relay 2 stuck" >&2; exit 3' };
    const err = await errorOf(power.run({ power: failing, action: 'on', owner: 'operator' }));
    assert.equal(err.code, 'JIGLET_E_DRIVER_FAILED');
    assert.match(
      err.message,
      /^power on of bench-a failed: the command driver failed: .*relay 2 stuck.* \(job \S+\)$/,
    );
    // The job and the driver's own code travel as data too.
    assert.ok(err instanceof DriverFailedError);
    assert.equal(err.jobId, /\(job (\S+)\)$/.exec(err.message)?.[1]);
    assert.equal(err.driverCode, 'JIGLET_E_UNAVAILABLE');
    // A new config means a new driver; the old one is stopped.
    assert.notEqual(/\(job (\S+)\)$/.exec(err.message)?.[1], on.jobId);
    assert.ok(isFinal(supervisor.get(on.jobId).record.state));

    // Its log holds one step per action, as `jig-driver power` prints them.
    const text = await readLog(on.jobId);
    const actions = text
      .split('\n')
      .filter((l) => l.startsWith('{"step"'))
      .map((l) => (JSON.parse(l) as { step: { action: string } }).step.action);
    assert.deepEqual(actions, ['on', 'status', 'cycle']);
    await power.close();
  });

  it('stops a driver that misses the deadline, with the timeout words, and starts a fresh one', async () => {
    // A "driver" that reads nothing and never answers; its child must go with its cgroup.
    const power = driver(sh('sleep 600 & wait'), 200);
    const hung = { ...relay, timeoutMs: 100 };
    const first = await errorOf(power.run({ power: hung, action: 'on', owner: 'operator' }));
    assert.equal(first.code, 'JIGLET_E_DRIVER_FAILED');
    assert.match(
      first.message,
      /^power on of bench-a failed: the command driver timed out after 300 ms \(job \S+\)$/,
    );
    const firstJob = /\(job (\S+)\)$/.exec(first.message)![1]!;
    assert.equal((first as DriverFailedError).jobId, firstJob);
    assert.equal(
      (first as DriverFailedError).driverCode,
      undefined,
      'a driver that said nothing has no code',
    );
    assert.equal(supervisor.get(firstJob).record.state, 'stopped');
    assert.equal(supervisor.get(firstJob).record.stopReason, 'timeout');
    const second = await errorOf(power.run({ power: hung, action: 'off', owner: 'operator' }));
    assert.match(second.message, /timed out after 300 ms/);
    assert.notEqual(
      /\(job (\S+)\)$/.exec(second.message)![1],
      firstJob,
      'the next action got a fresh driver',
    );
    await power.close();
  });

  it('says how a driver that died ended, with its last words', async () => {
    const power = driver(sh('echo "jig-driver: no such relay board" >&2; exit 3'));
    const err = await errorOf(power.run({ power: relay, action: 'on', owner: 'operator' }));
    assert.match(err.message, /the command driver exited with code 3: no such relay board \(job \S+\)$/);
    await power.close();
  });

  it('runs a per-action job the same way: same words, its job and the driver code as data', async () => {
    const failing = { ...relay, on: 'echo "relay 2 stuck" >&2; exit 3' };
    const err = await errorOf(
      runPowerJob({
        supervisor,
        jigDriver: defaultJigDriverCommand(),
        dut: 'bench-a',
        power: failing,
        action: 'on',
        owner: 'operator',
        stateDir: dir,
      }),
    );
    assert.ok(err instanceof DriverFailedError, String(err));
    assert.match(
      err.message,
      /^power on of bench-a failed: the command driver exited with code 1: .*relay 2 stuck.* \(job \S+\)$/,
    );
    assert.equal(err.driverCode, 'JIGLET_E_UNAVAILABLE');
    const job = supervisor.get(err.jobId!);
    assert.equal(job.record.owner, 'operator');
    assert.equal(job.record.exitCode, 1);
    const status = await runPowerJob({
      supervisor,
      jigDriver: defaultJigDriverCommand(),
      dut: 'bench-a',
      power: relay,
      action: 'status',
      owner: 'operator',
      stateDir: dir,
    });
    assert.equal(status.state, 'on');
  });

  async function readLog(id: string): Promise<string> {
    const out = supervisor.get(id).output();
    const release = out.acquire();
    try {
      let text = '';
      for (let offset = 0; offset < out.length; ) {
        const piece = await out.read(offset, out.length - offset);
        if (piece.data.length === 0) break;
        offset += piece.data.length;
        if (piece.stream === 'stderr') text += piece.data.toString('utf8');
      }
      return text;
    } finally {
      release();
    }
  }
});
