/**
 * The output pump (agent/src/output/output-pump.ts): users' jobs' output is written into their
 * logs by a thread of its own, so a job writing at pipe speed does not hold the event loop that
 * serves every other client, and the log keeps every byte, every stream change and the stderr
 * tail as it did when the agent's own thread wrote it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputLog } from '../../agent/src/output/output-log.js';
import { OutputPump } from '../../agent/src/output/output-pump.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type Job, JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

describe("the output pump: users' jobs' output written off the event loop", () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  it("keeps writing a job's output while the agent's event loop is held", async () => {
    const op = t.client('operator');
    const bytes = 64 * 1024 * 1024;
    const job = await op.start({ command: 'head', args: ['-c', String(bytes), '/dev/zero'] });
    const log = join(t.stateDir, 'jobs', job.id, 'output.log');
    // Held in one synchronous loop: written by this thread, the log could not pass what one pipe
    // holds (64 KiB) until the loop lets go.
    const deadline = Date.now() + 30_000;
    let size = 0;
    while (size < bytes && Date.now() < deadline) size = statSync(log).size;
    assert.equal(size, bytes, `the log held ${size} of ${bytes} bytes while the event loop was held`);
    const { all, finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.state, JobState.JOB_STATE_EXITED);
    assert.equal(all.length, bytes);
    assert.ok(all.every((b) => b === 0));
  });

  it('keeps the order of stdout and stderr, which stream each byte came from, and the stderr tail', async () => {
    const op = t.client('operator');
    // Each line is written only once the follower has the one before (the test answers on stdin),
    // so the order in the log is the job's own, however the host schedules the pump.
    const script = 'for i in 1 2 3; do echo "out $i"; read x; echo "err $i" >&2; read x; done; exit 3';
    const job = await op.start({ command: 'sh', args: ['-c', script], stdin: true });
    const stdin = op.stdin(job.id);
    // Runs of one stream, as a reader sees them (a piece never spans two streams).
    const runs: { stream: string; text: string }[] = [];
    let finished: Job | undefined;
    for await (const ev of op.output(job.id, { follow: true })) {
      if (ev.type === 'finished') {
        finished = ev.job;
        continue;
      }
      const last = runs.at(-1);
      if (last?.stream === ev.stream) last.text += ev.data.toString();
      else runs.push({ stream: ev.stream, text: ev.data.toString() });
      for (const _ of ev.data.toString().matchAll(/\n/g)) await stdin.write('\n');
    }
    await stdin.end();
    assert.equal(finished?.state, JobState.JOB_STATE_EXITED);
    assert.equal(finished?.exitCode, 3);
    assert.deepEqual(
      runs.map((r) => `${r.stream}: ${r.text.trim()}`),
      ['stdout: out 1', 'stderr: err 1', 'stdout: out 2', 'stderr: err 2', 'stdout: out 3', 'stderr: err 3'],
    );
    assert.equal(finished?.stderrTail, 'err 1\nerr 2\nerr 3');
    // The index on disk agrees, so a restarted agent reads the same streams.
    const index = readFileSync(join(t.stateDir, 'jobs', job.id, 'output.idx'), 'utf8')
      .trim()
      .split('\n');
    assert.deepEqual(
      index.map((l) => l.split(' ').slice(0, 2).join(' ')),
      ['0 stdout', '6 stderr', '12 stdout', '18 stderr', '24 stdout', '30 stderr'],
    );
  });

  it('keeps every byte in order through writes of every size, on both streams', async () => {
    const op = t.client('operator');
    // Writes from 1 byte to 300 KB: small ones the pump gathers before writing, big ones it writes
    // at once, in the order they came; every 7th goes to stderr.
    const program = `
      const { writeSync } = require('node:fs');
      for (let i = 0; i < 160; i++) {
        const size = ((i * 7919) % 300000) % (i % 3 === 0 ? 300000 : 3000) + 1;
        const chunk = Buffer.alloc(size, (i * 31) & 255);
        if (size >= 4) chunk.writeUInt32LE(i, 0);
        let done = 0;
        while (done < size) done += writeSync(i % 7 === 6 ? 2 : 1, chunk, done);
      }`;
    const expected = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    for (let i = 0; i < 160; i++) {
      const size = (((i * 7919) % 300000) % (i % 3 === 0 ? 300000 : 3000)) + 1;
      const chunk = Buffer.alloc(size, (i * 31) & 255);
      if (size >= 4) chunk.writeUInt32LE(i, 0);
      (i % 7 === 6 ? expected.stderr : expected.stdout).push(chunk);
    }
    const job = await op.start({ command: process.execPath, args: ['-e', program] });
    const { stdout, stderr, finished } = await collect(op, job.id, { follow: true });
    assert.equal(finished?.exitCode, 0, finished?.stderrTail);
    assert.ok(stdout.equals(Buffer.concat(expected.stdout)), 'stdout differs');
    assert.ok(stderr.equals(Buffer.concat(expected.stderr)), 'stderr differs');
  });

  it('gives a follower that keeps up each line as it is written, not when the job ends', async () => {
    const op = t.client('operator');
    // The job writes its next line only once the follower has this one: a pump that held lines
    // back would hang here.
    const job = await op.start({
      command: 'sh',
      args: ['-c', 'for i in 1 2 3 4 5; do echo "line $i"; read x; done'],
      stdin: true,
    });
    const stdin = op.stdin(job.id);
    let seen = '';
    for await (const ev of op.output(job.id, { follow: true })) {
      if (ev.type !== 'chunk') continue;
      seen += ev.data.toString();
      for (const _ of ev.data.toString().matchAll(/\n/g)) await stdin.write('\n');
    }
    await stdin.end();
    assert.equal(seen, 'line 1\nline 2\nline 3\nline 4\nline 5\n');
  });
});

describe('the output pump on its own', () => {
  let dir: string;
  let pump: OutputPump;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-pump-test-'));
    pump = await OutputPump.start();
  });
  afterEach(async () => {
    await pump.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('closes a connection that does not name a job it was told of, and writes nothing', async () => {
    const log = OutputLog.create(dir);
    const output = await pump.attach(log, (err) => assert.fail(err));
    // Whoever reaches the socket without the token gets nowhere near a log.
    const stranger = createConnection(pump.socketPath);
    stranger.write(`${'0'.repeat(32)}ohello`);
    await new Promise((resolve) => stranger.once('close', resolve));
    await new Promise((resolve) => output.stdio[0].write('mine\n', resolve));
    // As when the job's process exits: its copies close, and the pump reports the end.
    output.handedOver();
    await output.closed;
    assert.equal(readFileSync(join(dir, 'output.log'), 'utf8'), 'mine\n');
    assert.equal(log.length, 5);
    assert.equal(pump.jobs, 0, 'the pump still holds the job');
    log.close();
  });

  it('tells the jobs it writes for that their output is lost when its thread ends', async () => {
    const log = OutputLog.create(dir);
    const errors: string[] = [];
    const output = await pump.attach(log, (err) => errors.push(err.message));
    await pump.close();
    await output.closed;
    assert.deepEqual(errors, ['the agent is stopping']);
    await assert.rejects(
      pump.attach(OutputLog.create(mkdtempSync(join(dir, 'x-'))), () => {}),
      /stopping/,
    );
    log.close();
  });
});
