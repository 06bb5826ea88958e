/**
 * The fleet queue's store, one suite run on both engines (in-process PGlite and a real
 * PostgreSQL 15 started here): migrations, validation, label matching, exactly-once claims under
 * concurrency, fencing, expiry, cancel, logs, stats; then what only one engine has: surviving a
 * PostgreSQL restart, and the embedded engine served to another process on its socket.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { freshPgliteDir } from '../../fixtures/test-support/pglite-template.js';
import { type PostgresServer, startPostgres } from '../../fixtures/test-support/postgres-server.js';
import { MAX_TEST_CASES, parseJunit, renderJunit, type TestCase } from '../../protocol/src/test-cases.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, migrate } from '../src/queue/migrations.js';
import { isConnectionError, openQueueDb, type QueueDb } from '../src/queue/queue-db.js';
import {
  type Claimant,
  type JobSpec,
  LOG_CHANNEL,
  type QueueJob,
  QueueStore,
} from '../src/queue/queue-store.js';

const SPEC: JobSpec = { labels: { board: 'rpi4' }, command: ['make', 'test'], timeoutMs: 60_000 };
const RPI: Claimant = { worker: 'w1', agent: 'a1', dut: 'rpi-1', dutLabels: { board: 'rpi4', ram: '4g' } };
const TABLES = 'queue_logs, queue_attempts, queue_duts, queue_jobs';

/** A database engine the suite runs on. */
interface Engine {
  name: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A new, empty database (not migrated). */
  freshUrl(): Promise<string>;
}

function pgliteEngine(): Engine {
  return {
    name: 'in-process PGlite',
    setUp: async () => undefined,
    tearDown: async () => undefined,
    freshUrl: async () => 'pglite:memory',
  };
}

function postgresEngine(): Engine {
  let server: PostgresServer | undefined;
  let admin: QueueDb | undefined;
  let databases = 0;
  return {
    name: 'PostgreSQL 15',
    async setUp() {
      // Never skipped: a machine without PostgreSQL fails here, saying how to install it.
      server = await startPostgres();
      admin = await openQueueDb(server.url, { poolSize: 1 });
    },
    async tearDown() {
      await admin?.close();
      await server?.stop();
    },
    async freshUrl() {
      const name = `queue_${++databases}`;
      await admin!.exec(`CREATE DATABASE ${name}`);
      return server!.url.replace(/\/postgres$/, `/${name}`);
    },
  };
}

for (const engine of [pgliteEngine(), postgresEngine()]) {
  describe(`queue store on ${engine.name}`, function () {
    this.timeout(60_000);
    let url: string;
    let db: QueueDb;
    let store: QueueStore;
    const opened: QueueDb[] = [];
    /** A database the test owns, closed after it. */
    const open = async (at = url, poolSize?: number): Promise<QueueDb> => {
      const d = await openQueueDb(at, { poolSize });
      opened.push(d);
      return d;
    };
    /** Another connection (pool) to the suite's database; in-memory PGlite exists once, so it is shared. */
    const another = (poolSize?: number): Promise<QueueDb> =>
      url === 'pglite:memory' ? Promise.resolve(db) : open(url, poolSize);

    before(async () => {
      await engine.setUp();
      url = await engine.freshUrl();
      db = await openQueueDb(url, { poolSize: 10 });
      await migrate(db);
      store = new QueueStore(db);
    });
    after(async () => {
      await db?.close();
      await engine.tearDown();
    });
    beforeEach(async () => {
      await db.exec(`TRUNCATE ${TABLES} RESTART IDENTITY CASCADE`);
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((d) => d.close()));
    });

    describe('migrations', () => {
      it('applies every migration once; running it again changes nothing', async () => {
        const fresh = await open(await engine.freshUrl());
        assert.deepEqual(await migrate(fresh), { from: 0, to: LATEST_SCHEMA_VERSION });
        assert.deepEqual(await migrate(fresh), { from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION });
        const rows = await fresh.query<{ version: number }>(
          'SELECT version FROM jiglet_schema_migrations ORDER BY version',
        );
        assert.deepEqual(
          rows.map((r) => r.version),
          MIGRATIONS.map((m) => m.version),
        );
      });

      it('lets several workers migrate the same new database at once', async () => {
        const at = await engine.freshUrl();
        const first = await open(at, 1);
        const workers =
          at === 'pglite:memory'
            ? [first, first, first, first]
            : [first, ...(await Promise.all([1, 2, 3].map(() => open(at, 1))))];
        const results = await Promise.all(workers.map((w) => migrate(w)));
        assert.ok(results.every((r) => r.to === LATEST_SCHEMA_VERSION));
        assert.equal(results.filter((r) => r.from === 0).length >= 1, true);
        const [count] = await workers[0]!.query<{ n: number }>(
          'SELECT count(*)::integer AS n FROM jiglet_schema_migrations',
        );
        assert.equal(count!.n, MIGRATIONS.length);
      });

      it('refuses a database written by a newer jiglet', async () => {
        await db.query('INSERT INTO jiglet_schema_migrations (version, name) VALUES ($1, $2)', [
          LATEST_SCHEMA_VERSION + 1,
          'from the future',
        ]);
        try {
          const err = await errorOf(migrate(db));
          assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
          assert.match(err.message, new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1}, newer than`));
        } finally {
          await db.query('DELETE FROM jiglet_schema_migrations WHERE version > $1', [LATEST_SCHEMA_VERSION]);
        }
      });
    });

    describe('submit, get, list', () => {
      it('queues a job with its defaults and gives it back by id', async () => {
        const job = await store.submit({
          ...SPEC,
          image: { path: '/images/rpi.img.xz', sha256: 'a'.repeat(64) },
          submittedBy: 'ci-7',
        });
        assert.equal(typeof job.id, 'string');
        assert.equal(job.state, 'queued');
        assert.equal(job.priority, 0);
        assert.equal(job.maxAttempts, 3);
        assert.equal(job.attempts, 0);
        assert.ok(job.submittedAt instanceof Date);
        assert.deepEqual(await store.get(job.id), job);
        assert.deepEqual(job.image, { path: '/images/rpi.img.xz', sha256: 'a'.repeat(64) });
      });

      it('refuses a malformed job and says what is wrong', async () => {
        const cases: [Partial<JobSpec>, RegExp][] = [
          [{ labels: {} }, /labels must name at least one label/],
          [{ labels: { 'Board!': 'x' } }, /label name "Board!" must be a-z/],
          [{ labels: { board: '' } }, /value of "board" must be 1 to 256 printable/],
          [{ command: [] }, /command must be a non-empty argv/],
          [{ command: ['ls', 'a\0b'] }, /without NUL/],
          [{ timeoutMs: 999 }, /timeoutMs must be a whole number between 1 s and 7 days, not 999/],
          [{ timeoutMs: 8 * 24 * 3600 * 1000 }, /between 1 s and 7 days/],
          [{ maxAttempts: 0 }, /maxAttempts must be a whole number from 1 to 20, not 0/],
          [{ maxAttempts: 21 }, /maxAttempts must be a whole number from 1 to 20/],
          [{ priority: 1001 }, /priority must be a whole number from -1000 to 1000, not 1001/],
          [{ image: { path: '/i.img', sha256: 'xyz' } }, /image sha256 must be 64 lowercase hex digits/],
        ];
        for (const [change, message] of cases) {
          const err = await errorOf(store.submit({ ...SPEC, ...change }));
          assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT', JSON.stringify(change));
          assert.match(err.message, message);
        }
        assert.deepEqual(await store.list(), []);
      });

      it('says which id does not exist, and which is not an id at all', async () => {
        assert.equal((await errorOf(store.get('12345'))).code, 'JIGLET_E_NOT_FOUND');
        const err = await errorOf(store.get('abc'));
        assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
        assert.match(err.message, /"abc" is not a queue job id/);
      });

      it('lists newest first, by state and up to a limit', async () => {
        const ids = [];
        for (let i = 0; i < 4; i++) ids.push((await store.submit(SPEC)).id);
        await store.claimNext(RPI);
        assert.deepEqual(
          (await store.list()).map((j) => j.id),
          [...ids].reverse(),
        );
        assert.deepEqual(
          (await store.list({ states: ['claimed'] })).map((j) => j.id),
          [ids[0]],
        );
        assert.deepEqual(
          (await store.list({ states: ['queued'], limit: 2 })).map((j) => j.id),
          [ids[3], ids[2]],
        );
      });
    });

    describe('claims', () => {
      it('gives a DUT only jobs whose labels it has', async () => {
        const rpi = await store.submit(SPEC);
        assert.equal(await store.claimNext({ ...RPI, dutLabels: { board: 'bbb', ram: '4g' } }), undefined);
        const strict = await store.submit({ ...SPEC, labels: { board: 'bbb', usb: '3' } });
        assert.equal(await store.claimNext({ ...RPI, dutLabels: { board: 'bbb' } }), undefined);
        // The rpi job names one label; a DUT with more labels still fits it.
        const claimed = await store.claimNext(RPI);
        assert.equal(claimed?.id, rpi.id);
        assert.equal(claimed?.state, 'claimed');
        assert.equal(claimed?.attempts, 1);
        assert.deepEqual([claimed?.worker, claimed?.agent, claimed?.dut], ['w1', 'a1', 'rpi-1']);
        const bbb = await store.claimNext({ ...RPI, dutLabels: { board: 'bbb', usb: '3', ram: '1g' } });
        assert.equal(bbb?.id, strict.id);
      });

      it('serves higher priority first, then first come first served', async () => {
        const low1 = await store.submit(SPEC);
        const high = await store.submit({ ...SPEC, priority: 10 });
        const low2 = await store.submit(SPEC);
        const mid = await store.submit({ ...SPEC, priority: 5 });
        const order = [];
        for (let job = await store.claimNext(RPI); job; job = await store.claimNext(RPI)) order.push(job.id);
        assert.deepEqual(order, [high.id, mid.id, low1.id, low2.id]);
      });

      it('claims every job exactly once with 8 claimers racing', async () => {
        const JOBS = 200;
        const CLAIMERS = 8;
        for (let i = 0; i < JOBS; i += 50) {
          await Promise.all(Array.from({ length: Math.min(50, JOBS - i) }, () => store.submit(SPEC)));
        }
        const rivals = new QueueStore(await another(CLAIMERS));
        const claimedBy = await Promise.all(
          Array.from({ length: CLAIMERS }, async (_, w) => {
            const mine: string[] = [];
            for (;;) {
              const job = await rivals.claimNext({ ...RPI, worker: `w${w}`, dut: `rpi-${w}` });
              if (!job) return mine;
              mine.push(job.id);
            }
          }),
        );
        const all = claimedBy.flat();
        assert.equal(all.length, JOBS);
        assert.equal(new Set(all).size, JOBS);
        const [row] = await db.query<{ claimed: number; once: number }>(
          `SELECT count(*) FILTER (WHERE state = 'claimed')::integer AS claimed,
                  count(*) FILTER (WHERE attempts = 1)::integer AS once
           FROM queue_jobs`,
        );
        assert.deepEqual(row, { claimed: JOBS, once: JOBS });
      });

      it('puts an unclaimed job back without counting the attempt, only for its claimer', async () => {
        const job = await store.submit(SPEC);
        await store.claimNext(RPI);
        assert.equal(await store.unclaim(job.id, 1, 'w2'), false);
        assert.equal(await store.unclaim(job.id, 2, 'w1'), false);
        assert.equal(await store.unclaim(job.id, 1, 'w1'), true);
        const back = await store.get(job.id);
        assert.equal(back.state, 'queued');
        assert.equal(back.attempts, 0);
        assert.equal(back.worker, undefined);
        assert.equal(back.dut, undefined);
        assert.deepEqual(await store.attempts(job.id), []);
        assert.equal((await store.claimNext({ ...RPI, worker: 'w2' }))?.attempts, 1);
        assert.equal(await store.unclaim(job.id, 1, 'w1'), false);
      });
    });

    describe('fencing', () => {
      it('lets only the current attempt of the claiming worker heartbeat, run and finish', async () => {
        const job = await store.submit(SPEC);
        await store.claimNext(RPI);
        assert.deepEqual(await store.heartbeat(job.id, 1, 'w2'), { ours: false, cancelRequested: false });
        assert.equal(await store.markRunning(job.id, 1, 'w2', { leaseId: 'l-x' }), false);
        assert.equal(await store.markRunning(job.id, 1, 'w1', { leaseId: 'l-1' }), true);
        assert.equal(await store.setAgentJob(job.id, 1, 'w1', 'job-17'), true);
        const running = await store.get(job.id);
        assert.deepEqual([running.state, running.leaseId, running.agentJobId], ['running', 'l-1', 'job-17']);
        assert.deepEqual(await store.heartbeat(job.id, 1, 'w1'), { ours: true, cancelRequested: false });

        // w1 goes quiet; its job is requeued and w2 claims it as attempt 2.
        await db.query(`UPDATE queue_jobs SET heartbeat_at = now() - interval '1 hour'`);
        assert.deepEqual(await store.requeueExpired(60_000), { requeued: [job.id], failed: [] });
        assert.equal((await store.claimNext({ ...RPI, worker: 'w2' }))?.attempts, 2);
        assert.deepEqual(
          (await store.attempts(job.id)).map((a) => [
            a.attempt,
            a.worker,
            a.outcome,
            a.endedAt === undefined,
          ]),
          [
            [1, 'w1', 'lost', false],
            [2, 'w2', undefined, true],
          ],
        );
        assert.deepEqual(await store.heartbeat(job.id, 1, 'w1'), { ours: false, cancelRequested: false });
        assert.equal(await store.finish(job.id, 1, 'w1', { state: 'succeeded', exitCode: 0 }), false);
        assert.equal(await store.setAgentJob(job.id, 1, 'w1', 'job-18'), false);

        assert.equal(
          await store.finish(job.id, 2, 'w2', { state: 'failed', exitCode: 3, error: 'exit 3' }),
          true,
        );
        assert.equal(await store.finish(job.id, 2, 'w2', { state: 'succeeded' }), false);
        const done = await store.get(job.id);
        assert.deepEqual([done.state, done.exitCode, done.error], ['failed', 3, 'exit 3']);
        assert.ok(done.finishedAt instanceof Date);
        assert.deepEqual(
          (await store.attempts(job.id)).map((a) => [a.attempt, a.worker, a.outcome, a.reason]),
          [
            [1, 'w1', 'lost', 'worker w1 stopped heartbeating'],
            [2, 'w2', 'failed', 'exit 3'],
          ],
        );
      });
    });

    describe('expiry', () => {
      const age = (id: string, ms: number) =>
        db.query(`UPDATE queue_jobs SET heartbeat_at = now() - $2 * interval '1 millisecond' WHERE id = $1`, [
          id,
          ms,
        ]);

      it('requeues a job whose worker stopped heartbeating, and fails it when every attempt was lost', async () => {
        const job = await store.submit({ ...SPEC, maxAttempts: 2 });
        const alive = await store.submit({ ...SPEC, priority: -1 });
        await store.claimNext(RPI);
        await store.claimNext({ ...RPI, worker: 'w9' });
        await age(job.id, 61_000);
        await age(alive.id, 59_000);
        assert.deepEqual(await store.requeueExpired(60_000), { requeued: [job.id], failed: [] });
        const requeued = await store.get(job.id);
        assert.deepEqual([requeued.state, requeued.attempts, requeued.worker], ['queued', 1, undefined]);
        assert.equal((await store.get(alive.id)).state, 'claimed');

        await store.claimNext({ ...RPI, worker: 'w2' });
        await age(job.id, 61_000);
        assert.deepEqual(await store.requeueExpired(60_000), { requeued: [], failed: [job.id] });
        const failed = await store.get(job.id);
        assert.equal(failed.state, 'failed');
        assert.equal(failed.error, 'worker lost on every attempt (2 of 2)');
        assert.deepEqual(
          (await store.attempts(job.id)).map((a) => [a.attempt, a.worker, a.outcome, a.reason]),
          [
            [1, 'w1', 'lost', 'worker w1 stopped heartbeating'],
            [2, 'w2', 'lost', 'worker w2 stopped heartbeating'],
          ],
        );
      });

      it('hands each expired job to exactly one of several workers expiring at once', async () => {
        const ids = [];
        for (let i = 0; i < 20; i++) ids.push((await store.submit(SPEC)).id);
        for (const _ of ids) await store.claimNext(RPI);
        await db.query(`UPDATE queue_jobs SET heartbeat_at = now() - interval '1 hour'`);
        const rivals = new QueueStore(await another(4));
        const results = await Promise.all([1, 2, 3, 4].map(() => rivals.requeueExpired(60_000)));
        const requeued = results.flatMap((r) => r.requeued);
        assert.deepEqual(
          [...requeued].sort((a, b) => Number(a) - Number(b)),
          ids,
        );
        const [row] = await db.query<{ n: number }>(
          `SELECT count(*)::integer AS n FROM queue_attempts WHERE outcome = 'lost'`,
        );
        assert.equal(row!.n, ids.length);
      });
    });

    describe('cancel', () => {
      it('cancels a queued job at once', async () => {
        const job = await store.submit(SPEC);
        const cancelled = await store.cancel(job.id);
        assert.equal(cancelled.state, 'cancelled');
        assert.ok(cancelled.finishedAt instanceof Date);
        assert.equal(await store.claimNext(RPI), undefined);
      });

      it('asks the worker of a claimed or running job to stop, through its heartbeat', async () => {
        const claimed = await store.submit(SPEC);
        const running = await store.submit(SPEC);
        await store.claimNext(RPI);
        await store.claimNext({ ...RPI, worker: 'w2' });
        await store.markRunning(running.id, 1, 'w2', { leaseId: 'l-2' });
        for (const [job, worker, state] of [
          [claimed, 'w1', 'claimed'],
          [running, 'w2', 'running'],
        ] as const) {
          const asked = await store.cancel(job.id);
          assert.deepEqual([asked.state, asked.cancelRequested], [state, true]);
          assert.deepEqual(await store.heartbeat(job.id, 1, worker), { ours: true, cancelRequested: true });
          assert.equal(await store.finish(job.id, 1, worker, { state: 'cancelled' }), true);
          assert.equal((await store.get(job.id)).state, 'cancelled');
        }
      });

      it('refuses to cancel a finished job, and ends an unleased or lost one instead of requeueing it', async () => {
        const done = await store.submit(SPEC);
        const lost = await store.submit(SPEC);
        await store.claimNext(RPI);
        await store.claimNext({ ...RPI, worker: 'w2' });
        await store.finish(done.id, 1, 'w1', { state: 'succeeded', exitCode: 0 });
        const err = await errorOf(store.cancel(done.id));
        assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
        assert.equal(err.message, `job ${done.id} already succeeded`);
        assert.equal((await errorOf(store.cancel('999'))).code, 'JIGLET_E_NOT_FOUND');

        const unleased = await store.submit(SPEC);
        await store.claimNext(RPI);
        await store.cancel(unleased.id);
        assert.equal(await store.unclaim(unleased.id, 1, 'w1'), true);
        assert.equal((await store.get(unleased.id)).state, 'cancelled');

        await store.cancel(lost.id);
        await db.query(`UPDATE queue_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, [
          lost.id,
        ]);
        assert.deepEqual(await store.requeueExpired(60_000), { requeued: [], failed: [lost.id] });
        assert.equal((await store.get(lost.id)).state, 'cancelled');
      });
    });

    describe('logs', () => {
      it('keeps every byte, in order, and pages by sequence number', async () => {
        const job = await store.submit(SPEC);
        const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const chunks = [everyByte, Buffer.from('line\r\n\0'), Buffer.alloc(0), Buffer.from([0xff, 0xfe])];
        for (const c of chunks) await store.appendLog(job.id, 1, c);
        const all = await store.readLog(job.id);
        assert.deepEqual(
          all.map((c) => c.data),
          chunks,
        );
        assert.ok(all.every((c) => c.attempt === 1 && Buffer.isBuffer(c.data)));
        const seqs = all.map((c) => BigInt(c.seq));
        assert.deepEqual(
          seqs,
          [...seqs].sort((a, b) => (a < b ? -1 : 1)),
        );
        const page = await store.readLog(job.id, { afterSeq: all[1]!.seq, limit: 1 });
        assert.deepEqual(
          page.map((c) => c.data),
          [chunks[2]],
        );
        assert.equal((await errorOf(store.appendLog('999', 1, Buffer.from('x')))).code, 'JIGLET_E_NOT_FOUND');
      });

      it('notifies listeners when output arrives', async () => {
        const job = await store.submit(SPEC);
        const listener = await another();
        let heard!: (payload: string) => void;
        const notified = new Promise<string>((resolve) => {
          heard = resolve;
        });
        const unlisten = await listener.listen(LOG_CHANNEL, (payload) => heard(payload));
        assert.ok(unlisten, 'listen is supported on this engine');
        await store.appendLog(job.id, 1, Buffer.from('hello'));
        assert.equal(await notified, job.id);
        await unlisten();
      });
    });

    describe('stats', () => {
      it('counts queue depth and DUT supply per label set', async () => {
        await store.submit(SPEC);
        await store.submit(SPEC);
        await store.submit(SPEC);
        await store.submit({ ...SPEC, labels: { board: 'bbb' } });
        await store.claimNext(RPI);
        const rpi = (name: string, health: 'good' | 'bad' | 'maintenance', leased: boolean) => ({
          name,
          labels: { board: 'rpi4', ram: '4g' },
          health,
          leased,
        });
        await store.reportDuts('a1', 'w1', [
          rpi('rpi-1', 'good', false),
          rpi('rpi-2', 'good', true),
          rpi('rpi-3', 'bad', false),
          rpi('rpi-4', 'maintenance', true),
        ]);
        await store.reportDuts('a2', 'w2', [rpi('rpi-5', 'good', false)]);
        await db.query(`UPDATE queue_duts SET seen_at = now() - interval '10 minutes' WHERE agent = 'a2'`);
        // The next report from a1 no longer has rpi-4.
        await store.reportDuts('a1', 'w1', [
          rpi('rpi-1', 'good', false),
          rpi('rpi-2', 'good', true),
          rpi('rpi-3', 'bad', false),
        ]);
        const stats = await store.stats({ staleMs: 60_000 });
        assert.deepEqual(stats.labelSets, [
          {
            labels: { board: 'rpi4' },
            queued: 2,
            running: 1,
            duts: { idle: 1, busy: 1, quarantined: 1, offline: 1 },
          },
          {
            labels: { board: 'bbb' },
            queued: 1,
            running: 0,
            duts: { idle: 0, busy: 0, quarantined: 0, offline: 0 },
          },
        ]);
        assert.deepEqual(stats.totals, {
          queued: 3,
          claimed: 1,
          running: 0,
          succeeded: 0,
          failed: 0,
          cancelled: 0,
        });
      });
    });

    describe('verdicts and retries', () => {
      const dut = (name: string, health: 'good' | 'bad' | 'maintenance' = 'good') => ({
        name,
        labels: { board: 'rpi4', ram: '4g' },
        health,
        leased: false,
      });
      const claimOn = (name: string) => store.claimNext({ ...RPI, dut: name });

      it('ends a job with pass or fail, the step and reason kept per attempt', async () => {
        const passing = await store.submit(SPEC);
        const failing = await store.submit(SPEC);
        await store.claimNext(RPI);
        await store.claimNext({ ...RPI, dut: 'rpi-2' });
        assert.equal(await store.finish(passing.id, 1, 'w1', { state: 'succeeded', exitCode: 0 }), true);
        assert.equal(
          await store.finish(failing.id, 1, 'w1', {
            state: 'failed',
            verdict: 'fail',
            step: 'command',
            exitCode: 2,
            error: 'make exited 2',
            agentJobId: 'job-9',
          }),
          true,
        );
        const [p, f] = [await store.get(passing.id), await store.get(failing.id)];
        assert.deepEqual([p.state, p.verdict], ['succeeded', 'pass']);
        assert.deepEqual(
          [f.state, f.verdict, f.failedStep, f.verdictReason, f.exitCode],
          ['failed', 'fail', 'command', 'make exited 2', 2],
        );
        assert.deepEqual(
          (await store.attempts(failing.id)).map((a) => [
            a.verdict,
            a.step,
            a.exitCode,
            a.agentJobId,
            a.reason,
          ]),
          [['fail', 'command', 2, 'job-9', 'make exited 2']],
        );
      });

      it('retries an infra-error on another matching DUT, and ends infra-error once attempts run out', async () => {
        await store.reportDuts('a1', 'w1', [dut('rpi-1'), dut('rpi-2')]);
        const job = await store.submit({ ...SPEC, maxAttempts: 2 });
        assert.equal((await claimOn('rpi-1'))?.id, job.id);
        const end = {
          verdict: 'infra-error' as const,
          step: 'flash' as const,
          reason: 'flashing the image failed: bad xz',
        };
        assert.equal(await store.retry(job.id, 1, 'w1', end), 'queued');
        const requeued = await store.get(job.id);
        assert.deepEqual(
          [requeued.state, requeued.verdict, requeued.avoid],
          ['queued', undefined, [{ agent: 'a1', dut: 'rpi-1' }]],
        );
        assert.equal(
          await claimOn('rpi-1'),
          undefined,
          'the DUT that failed is avoided while another could run it',
        );
        const second = await claimOn('rpi-2');
        assert.deepEqual([second?.id, second?.attempts], [job.id, 2]);
        assert.equal(await store.retry(job.id, 2, 'w1', end), 'failed');
        const done = await store.get(job.id);
        assert.deepEqual(
          [done.state, done.verdict, done.failedStep, done.verdictReason],
          ['failed', 'infra-error', 'flash', 'flashing the image failed: bad xz (attempt 2 of 2)'],
        );
        assert.deepEqual(
          (await store.attempts(job.id)).map((a) => [a.attempt, a.dut, a.verdict, a.step]),
          [
            [1, 'rpi-1', 'infra-error', 'flash'],
            [2, 'rpi-2', 'infra-error', 'flash'],
          ],
        );
        assert.equal(await store.infraErrorStreak('a1', 'rpi-1'), 1);
      });

      it('lets the failed DUT retry a job when no other DUT in service could run it', async () => {
        await store.reportDuts('a1', 'w1', [dut('rpi-1'), dut('rpi-2', 'bad')]);
        const job = await store.submit(SPEC);
        await claimOn('rpi-1');
        await store.retry(job.id, 1, 'w1', { verdict: 'infra-error', step: 'power', reason: 'no power' });
        assert.equal((await claimOn('rpi-1'))?.id, job.id);
      });

      it('never retries a fail, and counts a lost worker as infra-error at the worker step', async () => {
        const job = await store.submit(SPEC);
        await store.claimNext(RPI);
        await db.query(`UPDATE queue_jobs SET heartbeat_at = now() - interval '1 hour'`);
        await store.requeueExpired(60_000);
        await store.claimNext(RPI);
        await store.finish(job.id, 2, 'w1', { state: 'failed', exitCode: 1, error: 'make exited 1' });
        assert.equal(await store.claimNext(RPI), undefined, 'a fail stays failed');
        assert.deepEqual(
          (await store.attempts(job.id)).map((a) => [a.outcome, a.verdict, a.step]),
          [
            ['lost', 'infra-error', 'worker'],
            ['failed', 'fail', undefined],
          ],
        );
        // A lost worker is not the DUT's fault: it does not count towards its health check.
        assert.equal(await store.infraErrorStreak('a1', 'rpi-1'), 0);
      });

      it('keeps the submitted environment and refuses names the worker sets', async () => {
        const job = await store.submit({ ...SPEC, env: { TOKEN: 's3cret', MODE: 'ci' } });
        assert.deepEqual((await store.get(job.id)).env, { TOKEN: 's3cret', MODE: 'ci' });
        const reserved = await errorOf(store.submit({ ...SPEC, env: { JIGLET_DUT: 'x' } }));
        assert.match(String(reserved), /JIGLET_DUT is set by the queue worker itself/);
        const bad = await errorOf(store.submit({ ...SPEC, env: { '1X': 'x' } }));
        assert.match(String(bad), /"1X" is not a variable name/);
      });
    });

    describe('test cases', () => {
      it('stores each attempt’s cases in order and gives back the latest attempt’s by default', async () => {
        const job = await store.submit(SPEC);
        await store.claimNext(RPI);
        const cases: TestCase[] = [
          { suite: 'boot', name: 'reaches a shell', status: 'passed', durationMs: 1200, message: '' },
          { suite: 'boot', name: 'no oops', status: 'failed', durationMs: 30, message: 'Oops: 0000 <b>' },
          { suite: 'net', name: 'dhcp', status: 'skipped', durationMs: 0, message: 'no cable' },
        ];
        assert.equal(await store.saveTestCases(job.id, 1, cases), 0);
        assert.deepEqual(await store.testCases(job.id), { attempt: 1, cases });
        await db.query(`UPDATE queue_jobs SET attempts = 2`);
        await store.saveTestCases(job.id, 2, cases.slice(0, 1));
        assert.deepEqual((await store.testCases(job.id)).cases, cases.slice(0, 1));
        assert.deepEqual((await store.testCases(job.id, 1)).cases, cases);
        const junit = renderJunit((await store.testCases(job.id, 1)).cases);
        assert.deepEqual(parseJunit(junit), cases, 'junit written back reads as the same cases');
        assert.match(String(await errorOf(store.testCases(job.id, 3))), /attempts 1 to 2, not 3/);
      });

      it('stores at most MAX_TEST_CASES and says how many were dropped', async () => {
        const job = await store.submit(SPEC);
        const many: TestCase[] = Array.from({ length: MAX_TEST_CASES + 5 }, (_, i) => ({
          suite: 's',
          name: `case ${i}`,
          status: 'passed',
          durationMs: 1,
          message: '',
        }));
        assert.equal(await store.saveTestCases(job.id, 1, many), 5);
        const [row] = await db.query<{ n: number }>('SELECT count(*)::integer AS n FROM queue_test_cases');
        assert.equal(row!.n, MAX_TEST_CASES);
      });
    });

    describe('a transparent queue', () => {
      const dut = (
        name: string,
        labels: Record<string, string>,
        health: 'good' | 'bad' | 'maintenance' = 'good',
        leased = false,
      ) => ({ name, labels, health, leased });

      it('accepts with a warning while no DUT is registered, refuses labels no DUT has, warns when all matching are out of service', async () => {
        assert.match(
          (await store.checkRunnable({ board: 'rpi4' })).warning ?? '',
          /no DUT is registered with the queue yet/,
        );
        await store.reportDuts('a1', 'w1', [
          dut('rpi-1', { board: 'rpi4' }, 'bad'),
          dut('rpi-2', { board: 'rpi4' }, 'maintenance'),
          dut('bbb-1', { board: 'bbb' }),
        ]);
        const refused = await errorOf(store.checkRunnable({ board: 'nowhere' }));
        assert.equal((refused as { code?: string }).code, 'JIGLET_E_INVALID_ARGUMENT');
        assert.match(
          String(refused),
          /no registered DUT has the labels board=nowhere, so the job could never run; the registered DUTs offer: board=bbb \(1 DUT\); board=rpi4 \(2 DUTs\)/,
        );
        assert.equal(
          (await store.checkRunnable({ board: 'rpi4' })).warning,
          'every DUT with the labels board=rpi4 is out of service (rpi-1 bad, rpi-2 maintenance); the job waits until one is back',
        );
        assert.deepEqual(await store.checkRunnable({ board: 'bbb' }), {});
      });

      it('tells a queued job its place in line, what matching DUTs do, and an estimate from recent runs', async () => {
        const labels = { board: 'rpi4' };
        await store.reportDuts('a1', 'w1', [
          dut('rpi-1', { board: 'rpi4', ram: '4g' }),
          dut('rpi-2', { board: 'rpi4' }, 'good', true),
          dut('rpi-3', { board: 'rpi4' }, 'bad'),
          dut('bbb-1', { board: 'bbb' }),
        ]);
        const running = await store.submit({ ...SPEC, labels });
        await store.claimNext({ ...RPI, agent: 'a1', dut: 'rpi-1', dutLabels: { board: 'rpi4' } });
        const first = await store.submit({ ...SPEC, labels });
        const second = await store.submit({ ...SPEC, labels });
        await store.submit({ ...SPEC, labels: { board: 'bbb' } });
        const place = await store.place(second.id);
        assert.deepEqual([place.position, place.queuedWithSameLabels], [2, 2]);
        assert.equal((await store.place(first.id)).position, 1);
        assert.deepEqual(
          place.duts.map((d) => [d.name, d.activity, d.job]),
          [
            ['rpi-1', 'running', running.id],
            ['rpi-2', 'leased', undefined],
            ['rpi-3', 'bad', undefined],
          ],
        );
        assert.equal(place.noEstimate, 'no estimate yet: no job with these labels has finished a run');
        assert.equal(place.estimate, undefined);
        // Two finished runs of 60 s and 120 s: a typical run of 90 s.
        await store.markRunning(running.id, 1, 'w1', { leaseId: 'l' });
        await store.finish(running.id, 1, 'w1', { state: 'succeeded', exitCode: 0 });
        await db.query(
          `UPDATE queue_jobs SET started_at = finished_at - interval '60 seconds' WHERE id = $1`,
          [running.id],
        );
        const other = await store.submit({ ...SPEC, labels, priority: 5 });
        await store.claimNext({ ...RPI, agent: 'a1', dut: 'rpi-1', dutLabels: { board: 'rpi4' } });
        await store.markRunning(other.id, 1, 'w1', { leaseId: 'l2' });
        await store.finish(other.id, 1, 'w1', { state: 'failed', exitCode: 1 });
        await db.query(
          `UPDATE queue_jobs SET started_at = finished_at - interval '120 seconds' WHERE id = $1`,
          [other.id],
        );
        const later = await store.place(second.id);
        // rpi-1 is idle again and takes the first job; the second waits one run on two usable DUTs.
        assert.deepEqual(later.estimate, { startInMs: 90_000, typicalRunMs: 90_000, fromRuns: 2 });
        assert.deepEqual((await store.place(first.id)).estimate?.startInMs, 0);
      });
    });

    if (engine.name.startsWith('PostgreSQL')) {
      describe('a PostgreSQL restart', () => {
        it('fails queries with a connection error meanwhile, then works again with nothing lost', async () => {
          const server = await startPostgres();
          const lost: Error[] = [];
          const pool = await openQueueDb(server.url, { poolSize: 4, onConnectionError: (e) => lost.push(e) });
          try {
            await migrate(pool);
            const queue = new QueueStore(pool);
            const job = await queue.submit(SPEC);
            await Promise.all([1, 2, 3].map(() => pool.query('SELECT pg_sleep(0.05)')));
            const heard: string[] = [];
            const unlisten = await pool.listen(LOG_CHANNEL, (id) => heard.push(id));

            // A statement in flight when the server shuts down, idle connections beside it.
            const inFlight = pool.query('SELECT pg_sleep(8)').then(
              () => assert.fail('pg_sleep outlived the server'),
              (err: unknown) => err,
            );
            await untilSleeping(pool);
            await server.restart();
            const err = await inFlight;
            assert.ok(isConnectionError(err), `not recognised as a connection error: ${err}`);
            assert.ok(lost.length > 0, 'the idle connections were lost');
            assert.ok(lost.every(isConnectionError), lost.join('\n'));
            assert.equal((await queue.get(job.id)).state, 'queued');
            // The LISTEN connection comes back by itself; what is sent before it has is lost (bounded re-check).
            const deadline = Date.now() + 10_000;
            while (heard.length === 0) {
              assert.ok(Date.now() < deadline, 'the listener never came back');
              await queue.appendLog(job.id, 1, Buffer.from('ping'));
              await delay(50);
            }
            await unlisten!();

            await server.kill();
            const down = await errorOf(queue.claimNext(RPI));
            assert.ok(isConnectionError(down), `not recognised as a connection error: ${down}`);
            await server.start();
            assert.equal((await queue.claimNext(RPI))?.id, job.id);
            assert.equal((await queue.list()).length, 1);
          } finally {
            await pool.close();
            await server.stop();
          }
        });
      });
    }
  });
}

/** Re-checks until the pool's pg_sleep statement is running on the server (bounded). */
async function untilSleeping(pool: QueueDb): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const [row] = await pool.query<{ n: number }>(
      `SELECT count(*)::integer AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(8)%'
         AND pid <> pg_backend_pid()`,
    );
    if (row!.n > 0) return;
    if (Date.now() > deadline) assert.fail('pg_sleep never started');
    await delay(5);
  }
}

describe('queue store on embedded PGlite served to other processes', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await freshPgliteDir();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lets a client submit through the socket a job the host sees and claims', async () => {
    const host = await QueueStore.open(`pglite:${dir}`, { hostEmbedded: true });
    try {
      const client = await QueueStore.open(`pglite:${dir}`);
      assert.equal(client.db.engine, 'pglite');
      assert.equal(await client.db.listen(LOG_CHANNEL, () => undefined), undefined);
      const job = await client.submit({ ...SPEC, submittedBy: 'jigctl' });
      assert.equal((await host.get(job.id)).submittedBy, 'jigctl');
      assert.equal((await host.claimNext(RPI))?.id, job.id);
      assert.equal((await client.get(job.id)).state, 'claimed');
      await client.close();
    } finally {
      await host.close();
    }
  });

  it('wakes the host’s listeners when a client submits', async () => {
    const host = await QueueStore.open(`pglite:${dir}`, { hostEmbedded: true });
    try {
      let heard!: (id: string) => void;
      const submitted = new Promise<string>((resolve) => {
        heard = resolve;
      });
      const unlisten = await host.onSubmit((id) => heard(id));
      const client = await QueueStore.open(`pglite:${dir}`);
      const job = await client.submit(SPEC);
      assert.equal(await submitted, job.id);
      await client.close();
      await unlisten!();
    } finally {
      await host.close();
    }
  });

  it('never runs the host’s statements inside a client’s transaction', async () => {
    const host = await QueueStore.open(`pglite:${dir}`, { hostEmbedded: true });
    try {
      const client = await QueueStore.open(`pglite:${dir}`);
      let hostSubmit: Promise<QueueJob> | undefined;
      await assert.rejects(
        client.db.transaction(async (tx) => {
          await tx.query(
            `INSERT INTO queue_jobs (labels, command, timeout_ms, max_attempts) VALUES ('{}', '{x}', 1000, 1)`,
          );
          hostSubmit = host.submit(SPEC);
          // Round trips during which the host's INSERT would slip into this transaction if it could.
          for (let i = 0; i < 5; i++) await tx.query('SELECT 1');
          throw new Error('the client gives up');
        }),
        /the client gives up/,
      );
      const job = await hostSubmit!;
      assert.deepEqual(
        (await host.list()).map((j) => j.id),
        [job.id],
      );
      await client.close();
    } finally {
      await host.close();
    }
  });

  it('tells a client with no host how to start one', async () => {
    const err = await errorOf(openQueueDb(`pglite:${dir}`));
    assert.equal(err.code, 'JIGLET_E_UNAVAILABLE');
    assert.equal(
      err.message,
      `no jiglet queue-worker is serving the embedded queue in ${dir}; ` +
        `start one with \`jiglet queue-worker --db pglite:${dir}\``,
    );
    assert.ok(isConnectionError(err));
  });

  it('refuses a second host on the same directory, and replaces a dead host’s socket', async () => {
    const host = await openQueueDb(`pglite:${dir}`, { hostEmbedded: true });
    const err = await errorOf(openQueueDb(`pglite:${dir}`, { hostEmbedded: true }));
    assert.match(err.message, /another jiglet queue-worker already serves the embedded queue/);
    await host.close();
    const again = await openQueueDb(`pglite:${dir}`, { hostEmbedded: true });
    await again.close();
  });
});
