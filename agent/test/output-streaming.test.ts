/**
 * Output over real gRPC + mutual TLS: offsets, followers at different speeds, cancellation
 * leaving nothing behind, and bytes that are not text.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

describe('output streaming', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  it('delivers NUL bytes, \\r and invalid UTF-8 byte-identical, with stdout and stderr kept apart', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: 'sh',
      args: ['-c', String.raw`printf 'a\000b\r\n\377\376\300'; printf 'E\000' >&2; printf 'z'`],
    });
    const got = await collect(op, job.id, { follow: true });
    assert.deepEqual(got.stdout, Buffer.from([0x61, 0, 0x62, 0x0d, 0x0a, 0xff, 0xfe, 0xc0, 0x7a]));
    assert.deepEqual(got.stderr, Buffer.from([0x45, 0]));
    // Two pipes carry no order between them, so only the total is fixed across streams.
    assert.equal(got.all.length, 11);
    assert.equal(got.finished?.state, JobState.JOB_STATE_EXITED);
    assert.equal(got.finished?.exitCode, 0);
  });

  it('serves a finished job from offset 0 and from a middle offset', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'seq', args: ['1', '20000'] });
    const whole = await collect(op, job.id, { follow: true });
    const expected = Buffer.from(`${Array.from({ length: 20000 }, (_, i) => i + 1).join('\n')}\n`);
    assert.deepEqual(whole.all, expected);
    const again = await collect(op, job.id);
    assert.deepEqual(again.all, expected);
    const tail = await collect(op, job.id, { offset: 1000 });
    assert.deepEqual(tail.all, expected.subarray(1000));
    const atEnd = await collect(op, job.id, { offset: expected.length });
    assert.equal(atEnd.all.length, 0);
  });

  it('follows a running job from offset 0 as it writes, then reports how it ended', async () => {
    const op = t.client('operator');
    const job = await op.start({
      command: 'sh',
      args: ['-c', 'echo one; read x; echo "two $x"; exit 3'],
      stdin: true,
    });
    const events = op.output(job.id, { follow: true });
    const first = await events.next();
    assert.equal(first.done, false);
    assert.equal(first.value?.type === 'chunk' && first.value.data.toString(), 'one\n');
    const writer = op.stdin(job.id);
    await writer.write('go\n');
    assert.equal(await writer.close(), 3);
    const rest: string[] = [];
    let finishedCode: number | undefined;
    for await (const ev of events) {
      if (ev.type === 'chunk') rest.push(ev.data.toString());
      else finishedCode = ev.job.exitCode;
    }
    assert.equal(rest.join(''), 'two go\n');
    assert.equal(finishedCode, 3);
  });

  it('gives a fast and a stalled follower identical bytes, and the stall does not hold up the fast one', async () => {
    const op = t.client('operator');
    // 24 MiB of incompressible bytes, far more than the transport buffers for a stalled reader.
    const job = await op.start({ command: 'head', args: ['-c', String(24 * 1024 * 1024), '/dev/urandom'] });
    const slowHash = createHash('sha256');
    const slow = op.output(job.id, { follow: true });
    const firstSlow = await slow.next();
    assert.ok(firstSlow.value && firstSlow.value.type === 'chunk');
    slowHash.update(firstSlow.value.data);
    // The slow follower now reads nothing until the fast one has everything.
    const fast = await collect(t.client('viewer'), job.id, { follow: true });
    assert.equal(fast.finished?.exitCode, 0);
    assert.equal(fast.all.length, 24 * 1024 * 1024);
    for await (const ev of slow) if (ev.type === 'chunk') slowHash.update(ev.data);
    const onDisk = readFileSync(join(t.stateDir, 'jobs', job.id, 'output.log'));
    const fastHash = createHash('sha256').update(fast.all).digest('hex');
    assert.equal(slowHash.digest('hex'), fastHash);
    assert.equal(createHash('sha256').update(onDisk).digest('hex'), fastHash);
  });

  it('leaves no follower, waiter or file handle behind when a client cancels mid-stream', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'sh', args: ['-c', 'seq 1 100000; cat'], stdin: true });
    await op.get(job.id); // connection established before the baseline
    const log = t.agent.supervisor.get(job.id).output();
    // File handles the agent holds on this job's log (the test shares the agent's process).
    const logFds = (): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).endsWith(`${job.id}/output.log`);
        } catch {
          return false; // the fd closed while we listed
        }
      }).length;
    const baseFds = logFds();
    // `seq 1 100000` writes 588895 bytes; after that the job only waits in `cat`.
    await waitUntil('the job to write all of its output', () => log.length === 588_895);
    for (let round = 0; round < 5; round++) {
      const controller = new AbortController();
      let seen = 0;
      for await (const ev of op.output(job.id, { follow: true, signal: controller.signal })) {
        if (ev.type === 'chunk') seen += ev.data.length;
        if (seen > 100) controller.abort();
      }
      // And a follower parked at the end of the log (nothing in flight) when it leaves.
      const parked = new AbortController();
      const waiting = op.output(job.id, { follow: true, offset: log.length, signal: parked.signal });
      const pending = waiting.next();
      await waitUntil('a follower waiting for growth', () => log.waiting === 1);
      parked.abort();
      assert.equal((await pending).done, true);
    }
    await waitUntil('server-side followers to go away', () => t.agent.grpc.followers.active.size === 0);
    await waitUntil('log readers to be released', () => log.readers === 0 && log.waiting === 0);
    assert.equal(logFds(), baseFds, 'file descriptors on the log');
    await op.stop(job.id, 100);
  });
});
