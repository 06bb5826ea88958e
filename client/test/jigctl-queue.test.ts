/**
 * `jigctl queue` and `jiglet queue-worker` as a single lab host uses them: the worker process
 * hosts the embedded queue and serves it to jigctl on its socket; CI submits, follows the logs
 * (exit code included), and reads status and stats; bad input gets one clear line.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freshPgliteDir } from '../../fixtures/test-support/pglite-template.js';
import {
  type QueueWorkerProcess,
  startQueueWorkerProcess,
} from '../../fixtures/test-support/queue-worker-process.js';
import { assertOneLineError, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { parseJunit, type TestCase } from '../../protocol/src/test-cases.js';
import { QueueStore } from '../src/queue/queue-store.js';

describe('jigctl queue on the embedded engine', function () {
  this.timeout(90_000);
  let v: VirtualJig;
  let dir: string;
  let worker: QueueWorkerProcess | undefined;
  let db: string;
  /** The test's own client of the embedded queue (through the worker's socket). */
  let store: QueueStore;

  /** Re-reads the queue until `done` holds (the queue has no event a test can wait on here). */
  const until = async (what: string, done: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await delay(100);
    }
  };

  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-q' }]);
    dir = await freshPgliteDir();
    db = `pglite:${dir}`;
    worker = await startQueueWorkerProcess(db, v.t.pki.as('operator', v.t.address), ['--name', 'lab-host']);
    store = await QueueStore.open(db);
  });
  after(async () => {
    await store?.close();
    await worker?.stop();
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says the queue is empty rather than printing a bare header', async () => {
    const stats = await runJigctl(v.t, ['queue', 'stats', '--db', db]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.equal(
      stats.stdout,
      'queue empty: 0 jobs queued, 0 running; finished: 0 succeeded, 0 failed, 0 cancelled\n',
    );
    const list = await runJigctl(v.t, ['queue', 'list', '--db', db]);
    assert.equal(list.stdout, 'queue empty: no jobs submitted\n');
  });

  it('submits, follows the logs to the exit code, and shows status, list and stats', async () => {
    const submitted = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'device-type=virtual',
      '--',
      'sh',
      '-c',
      'echo "hello from $JIGLET_DUT"; exit 3',
    ]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    assert.match(id, /^\d+$/);
    const logs = await runJigctl(v.t, ['queue', 'logs', id, '-f', '--db', db]);
    assert.equal(logs.code, 3, `logs -f exits with the job's code; stderr: ${logs.stderr}`);
    assert.match(logs.stdout, /hello from vdut-q/);
    assert.match(logs.stdout, /power cycle/);
    const status = await runJigctl(v.t, ['queue', 'status', id, '--db', db]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /job \d+: failed/);
    assert.match(status.stdout, /exit code: 3/);
    assert.match(status.stdout, /ran on:\s+vdut-q/);
    const listed = await runJigctl(v.t, ['queue', 'list', '--db', db, '-o', 'json']);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { id: string }[]).map((j) => j.id),
      [id],
    );
    const stats = await runJigctl(v.t, ['queue', 'stats', '--db', db, '-o', 'json']);
    const parsed = JSON.parse(stats.stdout) as {
      totals: Record<string, number>;
    };
    assert.equal(parsed.totals.failed, 1);
    const table = await runJigctl(v.t, ['queue', 'stats', '--db', db]);
    assert.equal(
      table.stdout,
      'queue empty: 0 jobs queued, 0 running; finished: 0 succeeded, 1 failed, 0 cancelled\n',
    );
    const again = await runJigctl(v.t, ['queue', 'cancel', id, '--db', db]);
    assert.notEqual(again.code, 0);
    assertOneLineError(again);
    assert.match(again.stderr, /already failed/);
  });

  it('refuses at once a job no registered DUT could run, naming what the DUTs offer', async () => {
    const refused = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'board=nowhere',
      '--',
      'true',
    ]);
    assert.equal(refused.code, 2);
    assertOneLineError(refused);
    assert.match(
      refused.stderr,
      /no registered DUT has the labels board=nowhere, so the job could never run; the registered DUTs offer: device-type=virtual \(1 DUT\)/,
    );
    const listed = await runJigctl(v.t, ['queue', 'list', '--db', db, '-o', 'json']);
    assert.ok(!listed.stdout.includes('nowhere'), 'nothing was queued');
  });

  it('shows a queued job for labels no DUT serves in stats and status, and cancels it', async () => {
    // Submitted past jigctl's check (as another client of the queue could): it waits for ever.
    const job = await store.submit({ labels: { board: 'nowhere' }, command: ['true'], timeoutMs: 60_000 });
    const table = await runJigctl(v.t, ['queue', 'stats', '--db', db]);
    assert.match(table.stdout, /^LABELS\s+QUEUED\s+RUNNING\s+IDLE\s+BUSY\s+QUARANTINED\s+OFFLINE\n/);
    assert.match(table.stdout, /\nboard=nowhere\s+1\s+0\s+0\s+0\s+0\s+0\n/);
    const status = await runJigctl(v.t, ['queue', 'status', job.id, '--db', db]);
    assert.match(status.stdout, /\nposition: {2}1 of 1 queued job for board=nowhere \(next in line\)\n/);
    assert.match(status.stdout, /\nDUTs: {6}no registered DUT has these labels\n/);
    assert.match(status.stdout, /\nestimate: {2}no estimate: no DUT that could run it is in service\n/);
    const cancelled = await runJigctl(v.t, ['queue', 'cancel', job.id, '--db', db]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /cancelled/);
  });

  it('submit --wait follows the job, exits with its code, and keeps --env values from all but the submitter', async () => {
    const waited = await runJigctl(
      v.t,
      [
        'queue',
        'submit',
        '--db',
        db,
        '--labels',
        'device-type=virtual',
        '--env',
        'GREETING=hi there',
        '--id-file',
        join(dir, 'job-id'),
        '--wait',
        '--',
        'sh',
        '-c',
        'echo "$GREETING on attempt $JIGLET_ATTEMPT"; exit 5',
      ],
      { env: { USER: 'alice' } },
    );
    assert.equal(waited.code, 5, waited.stderr);
    assert.match(waited.stdout, /hi there on attempt 1/);
    const id = /queued job (\d+)/.exec(waited.stderr)?.[1];
    assert.ok(id, waited.stderr);
    assert.equal(readFileSync(join(dir, 'job-id'), 'utf8'), `${id}\n`);
    assert.match(waited.stderr, new RegExp(`jigctl: job ${id}: fail at command: sh exited 5\n$`));
    const mine = await runJigctl(v.t, ['queue', 'status', id, '--db', db], { env: { USER: 'alice' } });
    assert.match(mine.stdout, /\nverdict: {3}fail at command: sh exited 5\n/);
    assert.match(mine.stdout, /\nenv: {7}GREETING=hi there\n/);
    assert.match(
      mine.stdout,
      /\nattempt 1: vdut-q \(worker lab-host\) \S+ \S+ fail at command \(exit 5\): sh exited 5\n/,
    );
    const theirs = await runJigctl(v.t, ['queue', 'status', id, '--db', db], { env: { USER: 'bob' } });
    assert.match(theirs.stdout, /\nenv: {7}GREETING=\(redacted\)\n/);
    assert.ok(!theirs.stdout.includes('hi there'));
    const listed = await runJigctl(v.t, ['queue', 'list', '--db', db, '-o', 'json'], {
      env: { USER: 'bob' },
    });
    const row = (JSON.parse(listed.stdout) as { id: string; env: Record<string, string> }[]).find(
      (j) => j.id === id,
    );
    assert.deepEqual(row?.env, { GREETING: '(redacted)' });

    // An infra-error (a corrupt image on the only DUT, one attempt) exits 75, not a test failure.
    const image = join(dir, 'corrupt.img.xz');
    writeFileSync(image, randomBytes(4096));
    const infra = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'device-type=virtual',
      '--image',
      image,
      '--max-attempts',
      '1',
      '--wait',
      '--',
      'true',
    ]);
    assert.equal(infra.code, 75, infra.stderr);
    assert.match(infra.stderr, /: infra-error at flash: flashing the image failed: .+ \(attempt 1 of 1\)\n$/);
  });

  it('submit --wait cancels the job when it is interrupted (Ctrl-C, a cancelled pipeline)', async () => {
    let interrupted = false;
    const waited = await runJigctl(
      v.t,
      [
        'queue',
        'submit',
        '--db',
        db,
        '--labels',
        'device-type=virtual',
        '--wait',
        '--',
        'sh',
        '-c',
        'echo started; exec sleep 600',
      ],
      {
        onStdout: (text, child) => {
          if (!interrupted && text.includes('started\n')) {
            interrupted = true;
            child.kill('SIGINT');
          }
        },
      },
    );
    assert.equal(waited.code, 130, waited.stderr);
    const id = /queued job (\d+)/.exec(waited.stderr)?.[1];
    assert.match(
      waited.stderr,
      new RegExp(`jigctl: cancelling job ${id} \\(again to leave it running\\)\\n`),
    );
    assert.match(waited.stderr, new RegExp(`jigctl: job ${id}: cancelled: cancelled on request\\n$`));
    const job = await store.get(id!);
    assert.equal(job.state, 'cancelled');
    const agentJob = await v.t.client('viewer').get(job.agentJobId!);
    assert.ok(agentJob.endedAt, 'its command was stopped on the agent');
  });

  it('says where a queued job stands behind a running one, with an estimate from recent runs', async () => {
    const busy = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'device-type=virtual',
      '--',
      'sleep',
      '600',
    ]);
    const busyId = busy.stdout.trim();
    await until('the first job to run', async () => (await store.get(busyId)).agentJobId !== undefined);
    const next = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'device-type=virtual',
      '--',
      'true',
    ]);
    const nextId = next.stdout.trim();
    const status = await runJigctl(v.t, ['queue', 'status', nextId, '--db', db]);
    assert.match(
      status.stdout,
      /\nposition: {2}1 of 1 queued job for device-type=virtual \(next in line\)\n/,
    );
    assert.match(status.stdout, new RegExp(`\\nDUTs:      1 matches: vdut-q running job ${busyId}\\n`));
    assert.match(
      status.stdout,
      /\nestimate: {2}starts in about \S+ \(typical run \S+, from the last \d+ runs? with these labels\)\n/,
    );
    const json = JSON.parse(
      (await runJigctl(v.t, ['queue', 'status', nextId, '--db', db, '-o', 'json'])).stdout,
    ) as {
      queue: { position: number; duts: { name: string; activity: string }[] };
    };
    assert.deepEqual([json.queue.position, json.queue.duts[0]?.activity], [1, 'running']);
    await runJigctl(v.t, ['queue', 'cancel', nextId, '--db', db]);
    await runJigctl(v.t, ['queue', 'cancel', busyId, '--db', db]);
    await until('the running job to end', async () => (await store.get(busyId)).state === 'cancelled');
  });

  it('prints the test cases of an attempt as a table, json or junit', async () => {
    const job = await store.submit({
      labels: { 'device-type': 'virtual' },
      command: ['true'],
      timeoutMs: 60_000,
    });
    await until('the job to end', async () => (await store.get(job.id)).state === 'succeeded');
    // The agent side that reads $JIGLET_RESULTS lands separately: store cases as the worker would.
    const cases: TestCase[] = [
      { suite: 'smoke', name: 'boots', status: 'passed', durationMs: 1500, message: '' },
      { suite: 'smoke', name: 'pings', status: 'failed', durationMs: 20, message: 'no reply from 10.0.0.1' },
    ];
    await store.saveTestCases(job.id, 1, cases);
    const table = await runJigctl(v.t, ['queue', 'results', job.id, '--db', db]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SUITE\s+NAME\s+STATUS\s+TIME\s+MESSAGE\n/);
    assert.match(table.stdout, /\nsmoke\s+pings\s+failed\s+0\.020s\s+no reply from 10\.0\.0\.1\n/);
    assert.match(
      table.stdout,
      new RegExp(`\\njob ${job.id} attempt 1: 2 test cases: 1 passed, 1 failed\\n$`),
    );
    const json = await runJigctl(v.t, ['queue', 'results', job.id, '--db', db, '-o', 'json']);
    assert.deepEqual(JSON.parse(json.stdout), { job: job.id, attempt: 1, cases });
    const junit = await runJigctl(v.t, [
      'queue',
      'results',
      job.id,
      '--db',
      db,
      '-o',
      'junit',
      '--attempt',
      '1',
    ]);
    assert.equal(junit.code, 0, junit.stderr);
    assert.deepEqual(parseJunit(junit.stdout), cases);
    const none = await runJigctl(v.t, ['queue', 'results', job.id, '--db', db, '--attempt', '2']);
    assert.equal(none.code, 2);
    assertOneLineError(none);
    assert.match(none.stderr, /has attempts 1 to 1, not 2/);
  });

  it('refuses bad input with one clear line', async () => {
    const noLabels = await runJigctl(v.t, ['queue', 'submit', '--db', db, '--', 'true']);
    assert.equal(noLabels.code, 2);
    assertOneLineError(noLabels);
    assert.match(noLabels.stderr, /--labels is required/);
    const noCommand = await runJigctl(v.t, ['queue', 'submit', '--db', db, '--labels', 'a=b']);
    assert.match(noCommand.stderr, /name the command to run after --/);
    const noDb = await runJigctl(v.t, ['queue', 'list']);
    assertOneLineError(noDb);
    assert.match(noDb.stderr, /name the queue database/);
    const nobody = await runJigctl(v.t, ['queue', 'list', '--db', `pglite:${join(dir, 'elsewhere')}`]);
    assertOneLineError(nobody);
    // The queue worker is missing, not the agent: say so, and how to start it.
    assert.equal(nobody.code, 69);
    assert.equal(
      nobody.stderr,
      `jigctl: no jiglet queue-worker is serving the embedded queue in ${join(dir, 'elsewhere')}; ` +
        `start one with \`jiglet queue-worker --db pglite:${join(dir, 'elsewhere')}\`\n`,
    );
    const noServer = await runJigctl(v.t, [
      'queue',
      'stats',
      '--db',
      'postgres://ci:secret@127.0.0.1:1/jiglet',
    ]);
    assert.equal(noServer.code, 69);
    assert.equal(
      noServer.stderr,
      'jigctl: cannot reach the queue database at 127.0.0.1:1: nothing accepts connections there (connection refused); ' +
        'check --db (or JIGLET_QUEUE_DB) and that PostgreSQL runs there\n',
    );
    const unknown = await runJigctl(v.t, ['queue', 'status', '999999', '--db', db]);
    assertOneLineError(unknown);
    const badTimeout = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'a=b',
      '--timeout',
      '0',
      '--',
      'true',
    ]);
    assertOneLineError(badTimeout);
    assert.match(badTimeout.stderr, /timeout/i);
  });
});
