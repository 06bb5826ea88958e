/**
 * The fleet queue end to end: queue workers beside a real agent (virtual jig, real gRPC over
 * mutual TLS) claiming from a real database — a PostgreSQL 15 server the test starts, and the
 * embedded engine. Every job runs exactly once; a killed worker's job is requeued only after its
 * run was stopped on the agent; a restarted database loses and duplicates nothing.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { type PostgresServer, startPostgres } from '../../fixtures/test-support/postgres-server.js';
import {
  type QueueWorkerProcess,
  startQueueWorkerProcess,
} from '../../fixtures/test-support/queue-worker-process.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { DutHealth } from '../../protocol/gen/jiglet/v1/jig.js';
import { type QueueJob, QueueStore } from '../src/queue/queue-store.js';
import { QueueWorker, type QueueWorkerTiming } from '../src/queue/queue-worker.js';

const FAST: QueueWorkerTiming = { heartbeatMs: 200, expiryMs: 4000, leaseTtlMs: 1500, idleMs: 200 };
const LABELS = { 'device-type': 'virtual' };

/** Waits, re-reading the job, until `done` holds. */
async function jobUntil(
  store: QueueStore,
  id: string,
  what: string,
  done: (job: QueueJob) => boolean,
  timeoutMs = 30_000,
): Promise<QueueJob> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await store.get(id);
    if (done(job)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} never ${what}; it is ${JSON.stringify(job)}`);
    // A bounded re-read of the database, which has no event a test can subscribe to here.
    await delay(50);
  }
}

/** Each line of the runs file: the queue job id a command ran for. */
function runsOf(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function counted(ids: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

describe('fleet queue workers on a virtual jig', function () {
  this.timeout(120_000);
  let v: VirtualJig;
  let pg: PostgresServer;
  let work: string;
  const workers: QueueWorker[] = [];
  const stores: QueueStore[] = [];
  const children: QueueWorkerProcess[] = [];

  const openStore = async (url: string): Promise<QueueStore> => {
    const store = await QueueStore.open(url, { onConnectionError: () => undefined });
    stores.push(store);
    return store;
  };
  const startWorker = (store: QueueStore, name: string, timing = FAST): QueueWorker => {
    const worker = new QueueWorker({
      store,
      connect: () => v.t.client('operator'),
      agent: v.t.address,
      name,
      timing,
    });
    workers.push(worker);
    worker.start();
    return worker;
  };

  before(async () => {
    [v, pg] = await Promise.all([
      startVirtualJig([{ name: 'vdut-a' }, { name: 'vdut-b' }, { name: 'vdut-c' }]),
      startPostgres(),
    ]);
  });
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'jiglet-queue-'));
    // Queued commands run as the worker identity's own uid, not root: they note their runs here.
    chmodSync(work, 0o777);
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL')));
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await Promise.all(stores.splice(0).map((s) => s.close()));
    rmSync(work, { recursive: true, force: true });
  });
  after(async () => {
    await Promise.all([v?.stop(), pg?.stop()]);
  });

  /** A command that notes the job it runs for, then prints something. */
  const noteRun = (extra = ''): string[] => [
    'sh',
    '-c',
    `echo "$JIGLET_QUEUE_JOB" >> ${join(work, 'runs')}; echo "ran on $JIGLET_DUT"${extra}`,
  ];

  for (const engine of ['postgres', 'pglite'] as const) {
    it(`runs every job exactly once with 3 workers × 24 jobs (${engine})`, async () => {
      const url = engine === 'postgres' ? pg.url : 'pglite:memory';
      const submitter = await openStore(url);
      await submitter.db.query('TRUNCATE queue_jobs CASCADE');
      const ids: string[] = [];
      for (let i = 0; i < 24; i++)
        ids.push((await submitter.submit({ labels: LABELS, command: noteRun(), timeoutMs: 60_000 })).id);
      // On PostgreSQL each worker has its own pool; the embedded engine lives in one process. A
      // lease TTL that a loaded host's stall cannot outlast: no worker dies here, and a lease
      // lost to a 1.5 s stall is a retry, not the duplicate or loss this test is about.
      const patient: QueueWorkerTiming = { ...FAST, leaseTtlMs: 10_000, expiryMs: 20_000 };
      for (let i = 0; i < 3; i++)
        startWorker(engine === 'postgres' ? await openStore(url) : submitter, `w${i}`, patient);
      for (const id of ids) await jobUntil(submitter, id, 'succeeded', (j) => j.state === 'succeeded');
      const counts = counted(runsOf(join(work, 'runs')));
      assert.deepEqual(
        ids.filter((id) => counts.get(id) !== 1),
        [],
        'each job ran exactly once',
      );
      assert.equal(counts.size, 24);
      const jobs = await Promise.all(ids.map((id) => submitter.get(id)));
      // Which job needed another attempt, and why (each attempt's outcome), if any did.
      const retried = await Promise.all(
        jobs
          .filter((j) => j.attempts !== 1 || j.exitCode !== 0)
          .map(async (j) => ({ id: j.id, exitCode: j.exitCode, attempts: await submitter.attempts(j.id) })),
      );
      assert.deepEqual(retried, [], 'each job succeeded on its first attempt');
      assert.ok(new Set(jobs.map((j) => j.dut)).size > 1, 'the work spread over the DUTs');
      const log = Buffer.concat((await submitter.readLog(ids[0]!)).map((c) => c.data)).toString();
      assert.match(log, /ran on vdut-/);
      assert.match(log, /power cycle/);
      assert.deepEqual(await v.t.client('viewer').leases.list(), [], 'every lease was released');
    });
  }

  it('requeues the job of a killed worker only after the agent stopped its run', async () => {
    const store = await openStore(pg.url);
    const marker = join(work, 'first-attempt');
    const job = await store.submit({
      labels: LABELS,
      command: [
        'sh',
        '-c',
        `if [ -e ${marker} ]; then echo second attempt; else touch ${marker}; exec sleep 600; fi`,
      ],
      timeoutMs: 120_000,
    });
    const doomed = await startQueueWorkerProcess(pg.url, v.t.pki.as('operator', v.t.address), [
      '--name',
      'doomed',
      '--heartbeat',
      '200ms',
      '--expiry',
      '4s',
      '--lease-ttl',
      '1.5s',
    ]);
    children.push(doomed);
    const running = await jobUntil(store, job.id, 'ran', (j) => j.agentJobId !== undefined);
    assert.equal(running.worker, 'doomed');
    await doomed.stop('SIGKILL');
    startWorker(await openStore(pg.url), 'survivor');
    const done = await jobUntil(store, job.id, 'succeeded', (j) => j.state === 'succeeded');
    assert.equal(done.attempts, 2, 'the lost attempt is counted');
    assert.equal(done.worker, 'survivor');
    const viewer = v.t.client('viewer');
    const [first, second] = [await viewer.get(running.agentJobId!), await viewer.get(done.agentJobId!)];
    assert.equal(first.stopReason, 'lease', "the dead worker's run was stopped when its lease expired");
    assert.ok(
      first.endedAt! <= second.startedAt!,
      `never two runs at once: first ended ${first.endedAt?.toISOString()}, second started ${second.startedAt?.toISOString()}`,
    );
    const history = await store.attempts(job.id);
    assert.equal(history[0]?.outcome, 'lost');
    assert.equal(history[1]?.outcome, 'succeeded');
  });

  it('keeps going through a database restart, losing and duplicating nothing', async () => {
    const submitter = await openStore(pg.url);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push(
        (await submitter.submit({ labels: LABELS, command: noteRun('; sleep 0.2'), timeoutMs: 60_000 })).id,
      );
    for (let i = 0; i < 2; i++) startWorker(await openStore(pg.url), `r${i}`);
    await waitUntil('some jobs to run', () => runsOf(join(work, 'runs')).length >= 3, 30_000, 20);
    await pg.restart();
    for (const id of ids) await jobUntil(submitter, id, 'succeeded', (j) => j.state === 'succeeded', 60_000);
    const counts = counted(runsOf(join(work, 'runs')));
    assert.deepEqual(
      ids.filter((id) => counts.get(id) !== 1),
      [],
      'each job ran exactly once',
    );
  });

  it('keeps looking for work when a look fails for good (a refused certificate), and stops cleanly', async () => {
    // issue 11 §5: such a failure used to end the loop with an unhandled rejection, which killed
    // `jiglet queue-worker`.
    const store = await openStore(pg.url);
    const lines: string[] = [];
    const worker = new QueueWorker({
      store,
      connect: () => v.t.client('norole'),
      agent: v.t.address,
      name: 'refused',
      timing: { ...FAST, idleMs: 20 },
      log: (line) => lines.push(line),
    });
    workers.push(worker);
    worker.start();
    const failed = (): string[] => lines.filter((l) => l.includes('looking for work failed'));
    await waitUntil('two failed looks for work', () => failed().length >= 2, 10_000, 10);
    assert.match(failed()[0]!, /"norole" carries no role: .*; trying again in \d+ ms/);
    await worker.stop();
  });

  it('ends with pass, fail or timeout, never retries a fail, and gives the command the submitted env and JIGLET_ATTEMPT', async () => {
    const store = await openStore(pg.url);
    startWorker(store, 'v0');
    const failing = await store.submit({
      labels: LABELS,
      command: ['sh', '-c', 'echo "$GREETING from attempt $JIGLET_ATTEMPT of job $JIGLET_QUEUE_JOB"; exit 3'],
      env: { GREETING: 'hello' },
      timeoutMs: 60_000,
    });
    const passing = await store.submit({ labels: LABELS, command: ['true'], timeoutMs: 60_000 });
    const slow = await store.submit({ labels: LABELS, command: ['sleep', '600'], timeoutMs: 2000 });
    const failed = await jobUntil(store, failing.id, 'failed', (j) => j.state === 'failed');
    assert.deepEqual(
      [failed.verdict, failed.failedStep, failed.exitCode, failed.attempts, failed.verdictReason],
      ['fail', 'command', 3, 1, 'sh exited 3'],
      'a fail is the test’s word: one attempt, not retried',
    );
    const log = Buffer.concat((await store.readLog(failing.id)).map((c) => c.data)).toString();
    assert.match(log, new RegExp(`hello from attempt 1 of job ${failing.id}`));
    assert.match(log, /attempt 1: fail at command \(exit 3\): sh exited 3/);
    // The agent keeps the value from anyone but the job's owner, as for any job's env.
    const agentJob = await v.t.client('viewer').get(failed.agentJobId!);
    assert.equal(agentJob.spec?.env.GREETING, '(redacted)');
    const passed = await jobUntil(store, passing.id, 'succeeded', (j) => j.state === 'succeeded');
    assert.deepEqual([passed.verdict, passed.exitCode], ['pass', 0]);
    const timedOut = await jobUntil(store, slow.id, 'timed out', (j) => j.state === 'failed');
    assert.deepEqual(
      [timedOut.verdict, timedOut.failedStep, timedOut.attempts],
      ['timeout', 'command', 1],
      'a timeout is not retried',
    );
  });

  it('retries an infra-error (a corrupt image) on another DUT and ends infra-error with its reason and step', async () => {
    const store = await openStore(pg.url);
    startWorker(store, 'i0');
    const image = join(work, 'corrupt.img.xz');
    writeFileSync(image, randomBytes(64 * 1024));
    const job = await store.submit({
      labels: LABELS,
      command: ['sh', '-c', `echo ran >> ${join(work, 'runs')}`],
      image: { path: image, sha256: createHash('sha256').update(readFileSync(image)).digest('hex') },
      maxAttempts: 2,
      timeoutMs: 60_000,
    });
    const done = await jobUntil(store, job.id, 'failed', (j) => j.state === 'failed', 60_000);
    assert.deepEqual([done.verdict, done.failedStep, done.attempts], ['infra-error', 'flash', 2]);
    assert.match(done.verdictReason ?? '', /^flashing the image failed: .+ \(attempt 2 of 2\)$/);
    const attempts = await store.attempts(job.id);
    assert.deepEqual(
      attempts.map((a) => [a.verdict, a.step]),
      [
        ['infra-error', 'flash'],
        ['infra-error', 'flash'],
      ],
    );
    assert.notEqual(attempts[0]!.dut, attempts[1]!.dut, 'the retry ran on another DUT');
    assert.deepEqual(runsOf(join(work, 'runs')), [], 'the command never ran');
  });

  it('marks a DUT bad after 3 infra-errors in a row on it, when it has no health check', async () => {
    const store = await openStore(pg.url);
    await store.db.query('TRUNCATE queue_jobs CASCADE');
    const admin = v.t.client('admin');
    // Only vdut-a in service, so every attempt lands there.
    await admin.jig.setState('vdut-b', 'maintenance', 'test: out of the way');
    await admin.jig.setState('vdut-c', 'maintenance', 'test: out of the way');
    try {
      const worker = new QueueWorker({
        store,
        connect: () => v.t.client('admin'),
        agent: v.t.address,
        name: 'h0',
        timing: FAST,
      });
      workers.push(worker);
      worker.start();
      const image = join(work, 'corrupt.img.xz');
      writeFileSync(image, randomBytes(4096));
      const sha256 = createHash('sha256').update(readFileSync(image)).digest('hex');
      for (let i = 0; i < 3; i++) {
        const job = await store.submit({
          labels: LABELS,
          command: ['true'],
          image: { path: image, sha256 },
          maxAttempts: 1,
          timeoutMs: 60_000,
        });
        const done = await jobUntil(store, job.id, 'failed', (j) => j.state === 'failed');
        assert.deepEqual([done.verdict, done.dut], ['infra-error', 'vdut-a']);
      }
      // The worker quarantines the DUT just after it records the third job's end.
      const deadline = Date.now() + 30_000;
      let dut = (await admin.jig.duts()).find((d) => d.name === 'vdut-a');
      while (dut?.health !== DutHealth.DUT_HEALTH_BAD && Date.now() < deadline) {
        await delay(50);
        dut = (await admin.jig.duts()).find((d) => d.name === 'vdut-a');
      }
      assert.equal(dut?.health, DutHealth.DUT_HEALTH_BAD, 'vdut-a was marked bad');
      assert.match(dut?.healthReason ?? '', /3 queue attempts in a row ended in an infra-error on vdut-a/);
    } finally {
      for (const name of ['vdut-a', 'vdut-b', 'vdut-c']) await admin.jig.setState(name, 'good');
    }
  });

  it('stops a running job that is cancelled, and records it as cancelled', async () => {
    const store = await openStore(pg.url);
    startWorker(store, 'c0');
    const job = await store.submit({ labels: LABELS, command: ['sleep', '600'], timeoutMs: 60_000 });
    const running = await jobUntil(store, job.id, 'ran', (j) => j.agentJobId !== undefined);
    await store.cancel(job.id);
    const done = await jobUntil(store, job.id, 'was cancelled', (j) => j.state === 'cancelled');
    assert.equal(done.attempts, 1);
    const agentJob = await v.t.client('viewer').get(running.agentJobId!);
    assert.ok(agentJob.endedAt, 'the agent job was stopped');
  });
});
