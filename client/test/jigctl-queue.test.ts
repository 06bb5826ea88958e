/**
 * `jigctl queue` and `jiglet queue-worker` as a single lab host uses them: the worker process
 * hosts the embedded queue and serves it to jigctl on its socket; CI submits, follows the logs
 * (exit code included), and reads status and stats; bad input gets one clear line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type QueueWorkerProcess,
  startQueueWorkerProcess,
} from '../../fixtures/test-support/queue-worker-process.js';
import { assertOneLineError, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

describe('jigctl queue on the embedded engine', function () {
  this.timeout(90_000);
  let v: VirtualJig;
  let dir: string;
  let worker: QueueWorkerProcess | undefined;
  let db: string;

  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-q' }]);
    dir = mkdtempSync(join(tmpdir(), 'jiglet-pglite-'));
    db = `pglite:${dir}`;
    worker = await startQueueWorkerProcess(db, v.t.pki.as('operator', v.t.address), ['--name', 'lab-host']);
  });
  after(async () => {
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

  it('shows a queued job for labels no DUT has in stats, and cancels it', async () => {
    const submitted = await runJigctl(v.t, [
      'queue',
      'submit',
      '--db',
      db,
      '--labels',
      'board=nowhere',
      '--',
      'true',
    ]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    const stats = await runJigctl(v.t, ['queue', 'stats', '--db', db, '-o', 'json']);
    const set = (
      JSON.parse(stats.stdout) as {
        labelSets: { labels: Record<string, string>; queued: number; duts: { idle: number } }[];
      }
    ).labelSets.find((s) => s.labels.board === 'nowhere');
    assert.equal(set?.queued, 1);
    assert.equal(set?.duts.idle, 0);
    const table = await runJigctl(v.t, ['queue', 'stats', '--db', db]);
    assert.match(table.stdout, /^LABELS\s+QUEUED\s+RUNNING\s+IDLE\s+BUSY\s+QUARANTINED\s+OFFLINE\n/);
    assert.match(table.stdout, /\nboard=nowhere\s+1\s+0\s+0\s+0\s+0\s+0\n/);
    assert.match(table.stdout, /\n1 job queued, 0 running; finished: 0 succeeded, 1 failed, 0 cancelled\n$/);
    const cancelled = await runJigctl(v.t, ['queue', 'cancel', id, '--db', db]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /cancelled/);
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
