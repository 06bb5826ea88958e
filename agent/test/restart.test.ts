/**
 * The real `jiglet serve` binary killed with -9 while jobs run: after a restart, records and
 * logs are intact, running jobs are `lost`, and none of their processes survive.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { testPki } from '../../fixtures/test-support/test-pki.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

/** True while the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('agent restart', () => {
  let stateDir: string;
  const procs: ChildProcess[] = [];
  before(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'jiglet-restart-'));
  });
  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps records and logs, marks running jobs lost, and kills what they left running', async () => {
    const pki = await testPki();
    const first = await startJigletProcess({ stateDir, tlsDir: pki.jigDir });
    procs.push(first.proc);
    const c1 = new JigletClient(pki.as('operator', first.address));
    const done = await c1.start({ command: 'echo', args: ['finished before the crash'] });
    await collect(c1, done.id, { follow: true });
    const running = await c1.start({
      command: 'sh',
      args: ['-c', 'echo before; setsid sleep 1000 & echo $!; sleep 1000'],
    });
    const events = c1.output(running.id, { follow: true });
    let text = '';
    for await (const ev of events) {
      if (ev.type === 'chunk') text += ev.data.toString();
      if (text.split('\n').length >= 3) break;
    }
    const grandchild = Number(text.split('\n')[1]);
    const leader = (await c1.get(running.id)).pid;
    c1.close();
    assert.ok(alive(grandchild) && alive(leader));

    first.proc.kill('SIGKILL');
    await once(first.proc, 'exit');
    assert.ok(alive(leader), 'the job outlives a crashed agent until the restart cleans up');

    const second = await startJigletProcess({ stateDir, tlsDir: pki.jigDir });
    procs.push(second.proc);
    const c2 = new JigletClient(pki.as('operator', second.address));
    try {
      const lost = await c2.get(running.id);
      assert.equal(lost.state, JobState.JOB_STATE_LOST);
      assert.match(lost.error, /agent stopped/);
      assert.equal(alive(leader), false, 'job leader survived the restart');
      assert.equal(alive(grandchild), false, 'setsid grandchild survived the restart');
      assert.equal((await collect(c2, running.id)).all.toString(), text);
      const kept = await c2.get(done.id);
      assert.equal(kept.state, JobState.JOB_STATE_EXITED);
      assert.equal((await collect(c2, done.id)).all.toString(), 'finished before the crash\n');
      // The restarted agent works as before.
      const fresh = await c2.start({ command: 'echo', args: ['after'] });
      assert.equal((await collect(c2, fresh.id, { follow: true })).all.toString(), 'after\n');
    } finally {
      c2.close();
      second.proc.kill('SIGTERM');
      await once(second.proc, 'exit');
    }
  });

  it('shuts down gracefully on SIGTERM: running jobs are stopped and recorded, exit 0', async () => {
    const pki = await testPki();
    const agent = await startJigletProcess({ stateDir, tlsDir: pki.jigDir });
    procs.push(agent.proc);
    const c = new JigletClient(pki.as('operator', agent.address));
    const job = await c.start({ command: 'sh', args: ['-c', 'echo up; exec sleep 1000'] });
    const events = c.output(job.id, { follow: true });
    await events.next();
    const leader = (await c.get(job.id)).pid;
    const exited = once(agent.proc, 'exit');
    agent.proc.kill('SIGTERM');
    const [code] = await exited;
    c.close();
    assert.equal(code, 0);
    assert.equal(alive(leader), false, 'the job outlived a graceful shutdown');
    const record = JSON.parse(readFileSync(join(stateDir, 'jobs', job.id, 'job.json'), 'utf8'));
    assert.equal(record.state, 'stopped');
    assert.equal(record.stopReason, 'shutdown');
  });
});
