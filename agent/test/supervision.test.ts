/**
 * Supervision with real processes and real cgroups: whole-tree stop (including a grandchild
 * that escaped with setsid), timeout, exit code, signal, and the memory limit's OOM kill.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

/** Session id of a live process, or null once it is gone (zombies count as gone). */
function sessionOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? null : Number(fields[3]);
  } catch {
    return null;
  }
}

describe('supervision', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  it('runs jobs contained by cgroups on this host', async () => {
    const job = await t.client('operator').start({ command: 'true' });
    assert.match(job.containment, /^cgroup-v[12]$/);
  });

  it('stops the whole tree, including a grandchild that called setsid', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: 'sh',
      args: ['-c', "setsid sh -c 'echo $$; exec sleep 1000' & wait"],
    });
    const events = op.output(job.id, { follow: true });
    const first = await events.next();
    const grandchild = Number(first.value?.type === 'chunk' && first.value.data.toString().trim());
    assert.ok(grandchild > 0);
    assert.equal(
      sessionOf(grandchild),
      grandchild,
      'the grandchild leads its own session, outside the job group',
    );
    const stopped = await op.stop(job.id, 500);
    assert.equal(stopped.state, JobState.JOB_STATE_STOPPED);
    assert.equal(stopped.stopReason, 'request');
    assert.equal(sessionOf(grandchild), null, 'grandchild still alive after stop');
    await events.return(undefined);
  });

  it('stops a job at its timeout', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'sleep', args: ['1000'], timeoutMs: 300 });
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.state, JobState.JOB_STATE_STOPPED);
    assert.equal(finished?.stopReason, 'timeout');
    assert.equal(finished?.signal, 'SIGTERM');
  });

  it('kills after the grace period a job that ignores SIGTERM', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: 'sh',
      args: ['-c', "trap '' TERM; echo ready; while :; do :; done"],
    });
    const events = op.output(job.id, { follow: true });
    await events.next(); // "ready": the trap is installed
    const stopped = await op.stop(job.id, 200);
    assert.equal(stopped.state, JobState.JOB_STATE_STOPPED);
    assert.equal(stopped.signal, 'SIGKILL');
    await events.return(undefined);
  });

  it('reports the exit code', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'sh', args: ['-c', 'exit 42'] });
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.state, JobState.JOB_STATE_EXITED);
    assert.equal(finished?.exitCode, 42);
    assert.equal(finished?.signal, '');
  });

  it('reports the signal that ended a job', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'sh', args: ['-c', 'kill -USR1 $$'] });
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.state, JobState.JOB_STATE_EXITED);
    assert.equal(finished?.signal, 'SIGUSR1');
    assert.equal(finished?.exitCode, undefined);
  });

  it('reports a job that outgrew its memory limit as OOM-killed', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: process.execPath,
      args: ['-e', 'const b = Buffer.alloc(512 * 1024 * 1024, 1); console.log(b.length)'],
      memoryBytes: 96 * 1024 * 1024,
    });
    const { finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.oomKilled, true);
    assert.equal(finished?.signal, 'SIGKILL');
  });

  it('applies the CPU and pids limits to the job cgroup', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: 'sh',
      args: ['-c', 'cat /proc/self/cgroup; for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait'],
      cpuMillis: 250,
      pidsMax: 4,
    });
    const { all, finished } = await collect(op, job.id, { follow: true });
    assert.match(all.toString(), /fork|Resource temporarily unavailable|Cannot fork/i);
    assert.equal(finished?.state, JobState.JOB_STATE_EXITED);
  });

  it('marks a missing program as a failed job with a clear reason', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'no-such-program-xyz' });
    assert.equal(job.state, JobState.JOB_STATE_FAILED);
    assert.equal(
      job.error,
      "command not found: no-such-program-xyz (not on the agent's PATH; give a full path)",
    );
    const again = await op.get(job.id);
    assert.equal(again.state, JobState.JOB_STATE_FAILED);
  });
});
