/**
 * Every kind of state file, truncated (a crash or a full disk) and garbled (blocks a disk lost,
 * zero-filled), then an agent started on that state directory: it starts, logs an error, moves
 * the file aside as NAME.corrupt-TIME, starts that part over, and keeps the rest of its state.
 * The agents run in-process (startAgent, what `jiglet serve` runs) to keep nine starts cheap;
 * state-crash-safety-lock.test.ts starts the binary.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { JigletClient } from '../../client/src/jiglet-client.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type JigDescription, parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { DutHealth } from '../../protocol/gen/jiglet/v1/jig.js';
import type { JigletError } from '../../protocol/src/errors.js';
import { LeaseManager } from '../src/leases/lease-manager.js';

/** Cuts a file in the middle of its last line (or in half), as a crash mid-write leaves it. */
function truncate(path: string): void {
  const size = statSync(path).size;
  truncateSync(path, Math.max(0, size - Math.min(10, Math.floor(size / 2))));
}

/** Zero-fills 16 bytes at `at` (default: the middle), as a disk that lost a block returns it. */
function garble(path: string, at?: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(16), 0, 16, at ?? Math.max(0, Math.floor(statSync(path).size / 2) - 8));
  } finally {
    closeSync(fd);
  }
}

/** The names `path` was moved aside to. */
function movedAside(path: string): string[] {
  return readdirSync(dirname(path)).filter((n) => n.startsWith(`${basename(path)}.corrupt-`));
}

/** The agent's error log lines (pino JSON, level ≥ 50) that mention `text`. */
function errorsAbout(agent: TestAgent, text: string): string[] {
  return agent
    .logText()
    .split('\n')
    .filter((line) => line.startsWith('{') && (JSON.parse(line) as { level: number }).level >= 50)
    .filter((line) => line.includes(text));
}

describe('state files that a crash or a disk damaged', () => {
  let work: string;
  let good: string;
  let jig: JigDescription;
  const jobs: string[] = [];
  const images: string[] = [];
  let leaseId: string;
  const agents: TestAgent[] = [];

  async function start(stateDir: string): Promise<{ agent: TestAgent; as(name: string): JigletClient }> {
    const agent = await startTestAgent({ stateDir, jig });
    agents.push(agent);
    return { agent, as: (name) => agent.client(name) };
  }

  let cases = 0;
  /** A copy of the good state directory for one case. */
  function copyOfGood(): string {
    const dir = join(work, `case-${++cases}`);
    cpSync(good, dir, { recursive: true });
    return dir;
  }

  /** Everything but `except` is as the first agent left it. */
  async function assertIntact(
    c: JigletClient,
    except: { jobs?: string[]; lease?: boolean; health?: boolean; storage?: boolean; images?: boolean },
  ): Promise<void> {
    const listed = (await c.list()).map((j) => j.id).sort();
    assert.deepEqual(listed, jobs.filter((id) => !except.jobs?.includes(id)).sort(), 'job records');
    if (!except.lease)
      assert.deepEqual(
        (await c.leases.list()).map((l) => [l.dut, l.id]),
        [['d1', leaseId]],
        'the lease held',
      );
    const duts = await c.jig.duts();
    const d2 = duts.find((d) => d.name === 'd2')!;
    if (!except.health) {
      assert.equal(d2.health, DutHealth.DUT_HEALTH_MAINTENANCE, 'the health an admin set');
      assert.equal(d2.healthReason, 'relay board');
    }
    if (!except.storage) {
      for (const d of duts)
        assert.equal(d.storage?.lastImageSha256, images[0], `what was flashed on ${d.name}`);
    }
    if (!except.images)
      assert.deepEqual(
        (await c.images.list()).images.map((i) => i.sha256).sort(),
        [...images].sort(),
        'images',
      );
  }

  before(async function () {
    this.timeout(60_000);
    work = mkdtempSync(join(tmpdir(), 'jiglet-crash-'));
    good = join(work, 'good');
    // Storage behind a mux, so the DUT state file shows (nothing here switches it).
    const dut = (name: string): object => ({
      name,
      labels: { pool: 'crash' },
      storage: { mux: { driver: 'virtual', url: 'http://127.0.0.1:9' }, device: { path: join(work, name) } },
    });
    jig = parseJigDescription(JSON.stringify({ duts: [dut('d1'), dut('d2')] }), 'crash-jig');
    // As a journal fold leaves it: the next lease of d1 has token 42.
    mkdirSync(good);
    writeFileSync(join(good, 'leases.json'), JSON.stringify({ tokens: { d1: 41 }, leases: [] }));
    const { agent, as } = await start(good);
    const operator = as('operator');
    for (const n of [1, 2, 3]) {
      const job = await operator.start({ command: 'echo', args: [`job ${n}`] });
      await collect(operator, job.id, { follow: true });
      jobs.push(job.id);
    }
    for (const n of [1, 2]) {
      const file = join(work, `image-${n}.img`);
      writeFileSync(file, randomBytes(64 * 1024));
      images.push((await operator.images.upload(file)).sha256);
    }
    const lease = await operator.leases.claim({ dut: 'd1', ttlMs: 600_000 });
    assert.equal(lease.fencingToken, 42n);
    leaseId = lease.id;
    // Not fsynced: renewals and (at the clean stop below) tokens given back end the journal.
    await operator.leases.renew(leaseId);
    await as('admin').jig.setState('d2', 'maintenance', 'relay board');
    await agent.stop();
    // As a completed flash leaves them.
    for (const name of ['d1', 'd2']) {
      writeFileSync(
        join(good, 'duts', `${name}.json`),
        JSON.stringify({ dirty: false, lastJobId: jobs[0], lastImageSha256: images[0], lastFlashedAt: 1 }),
      );
    }
  });

  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
  });

  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('loses only the job whose record is damaged, and keeps its folder aside', async () => {
    const dir = copyOfGood();
    const [truncated, garbled, kept] = jobs as [string, string, string];
    truncate(join(dir, 'jobs', truncated, 'job.json'));
    garble(join(dir, 'jobs', garbled, 'job.json'));
    const { agent, as } = await start(dir);
    const c = as('operator');
    await assertIntact(c, { jobs: [truncated, garbled] });
    for (const id of [truncated, garbled]) {
      assert.equal(movedAside(join(dir, 'jobs', id)).length, 1, `${id} moved aside`);
      assert.equal(errorsAbout(agent, `${id}/job.json is damaged`).length, 1);
      await assert.rejects(c.get(id), (err: JigletError) => err.code === 'JIGLET_E_NOT_FOUND');
    }
    assert.equal((await c.get(kept)).id, kept);
  });

  it('counts a medium as dirty when its DUT state file is damaged', async () => {
    const dir = copyOfGood();
    truncate(join(dir, 'duts', 'd1.json'));
    garble(join(dir, 'duts', 'd2.json'));
    const { agent, as } = await start(dir);
    const c = as('operator');
    await assertIntact(c, { storage: true });
    for (const d of await c.jig.duts()) {
      assert.equal(d.storage?.dirty, true, `${d.name} dirty`);
      assert.equal(movedAside(join(dir, 'duts', `${d.name}.json`)).length, 1);
      assert.equal(errorsAbout(agent, `${d.name}.json is damaged`).length, 1);
    }
  });

  it('puts a DUT in maintenance when its health file is damaged', async () => {
    const dir = copyOfGood();
    truncate(join(dir, 'duts', 'd1.health.json'));
    garble(join(dir, 'duts', 'd2.health.json'));
    const { agent, as } = await start(dir);
    const c = as('operator');
    await assertIntact(c, { health: true });
    for (const d of await c.jig.duts()) {
      assert.equal(d.health, DutHealth.DUT_HEALTH_MAINTENANCE, `${d.name} in maintenance`);
      assert.match(d.healthReason, /health file was damaged .*jigctl dut state d\d good/);
      assert.equal(movedAside(join(dir, 'duts', `${d.name}.health.json`)).length, 1);
      assert.equal(errorsAbout(agent, `${d.name}.health.json is damaged`).length, 1);
    }
  });

  for (const [file, how] of [
    ['leases.json', truncate],
    ['leases.json', garble],
    // The first line (the grant): a torn last line is what a crash leaves, not damage (below).
    ['leases.jsonl', (path: string) => garble(path, 5)],
  ] as const) {
    it(`starts the leases over, never reusing a token, when ${file} is ${how === truncate ? 'truncated' : 'garbled'}`, async () => {
      const dir = copyOfGood();
      how(join(dir, file));
      const before = Date.now();
      const { agent, as } = await start(dir);
      const c = as('operator');
      await assertIntact(c, { lease: true });
      assert.deepEqual(await c.leases.list(), [], 'no lease held');
      assert.equal(movedAside(join(dir, file)).length, 1);
      assert.equal(errorsAbout(agent, `${file} is damaged`).length, 1);
      const lease = await c.leases.claim({ dut: 'd1', ttlMs: 60_000 });
      assert.ok(lease.fencingToken > BigInt(before), `token ${lease.fencingToken} above every earlier one`);
    });
  }

  it('cuts a torn last line off the lease journal and keeps the rest', async () => {
    const dir = copyOfGood();
    truncate(join(dir, 'leases.jsonl'));
    const { agent, as } = await start(dir);
    const c = as('operator');
    await assertIntact(c, {});
    assert.deepEqual(movedAside(join(dir, 'leases.jsonl')), []);
    assert.match(agent.logText(), /cut a torn last line off the lease journal/);
    await c.leases.release(leaseId);
    // The torn line was the clean stop giving back the tokens it had reserved: they stay skipped.
    assert.ok((await c.leases.claim({ dut: 'd1', ttlMs: 60_000 })).fencingToken > 42n);
  });

  it('drops a cached image whose metadata is damaged, and skips damaged run record lines', async () => {
    const dir = copyOfGood();
    const [truncated, garbled] = images as [string, string];
    truncate(join(dir, 'images', truncated, 'meta.json'));
    garble(join(dir, 'images', garbled, 'meta.json'));
    const index = join(dir, 'records', '_leases.jsonl');
    const lines = readFileSync(index, 'utf8').length;
    garble(index, Math.floor(lines / 2));
    const { agent, as } = await start(dir);
    const c = as('operator');
    await assertIntact(c, { images: true });
    assert.deepEqual((await c.images.list()).images, [], 'both dropped: an upload brings them back');
    for (const sha of images) assert.equal(errorsAbout(agent, `cached image ${sha} is unreadable`).length, 1);
    // A run record is history, line by line: a damaged line is skipped when read, not the journal.
    assert.deepEqual(movedAside(index), []);
    const timeline = await c.records.timeline({ leaseId }, { includeSerial: false });
    assert.ok(timeline);
  });
});

describe('the lease journal after a power cut', () => {
  let dir: string;
  const managers: LeaseManager[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-powercut-'));
  });
  afterEach(() => {
    for (const m of managers.splice(0)) m.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (): LeaseManager => {
    const m = new LeaseManager({ stateDir: dir });
    managers.push(m);
    return m;
  };

  it('never hands out a token again, even when the grants after the last fsync were lost', async () => {
    const m1 = open();
    const first = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    m1.release(first.id, 'ci');
    // What the fsyncs put on disk: the reservation, the first grant and its end.
    const onDisk = readFileSync(join(dir, 'leases.jsonl'), 'utf8').split('\n').slice(0, 3).join('\n');
    let last = first.token;
    for (let i = 0; i < 5; i++) {
      const lease = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
      m1.release(lease.id, 'ci');
      last = lease.token;
    }
    // The power goes: no clean stop, and what the page cache held is gone.
    writeFileSync(join(dir, 'leases.jsonl'), `${onDisk}\n`);
    const m2 = open();
    const next = await m2.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    assert.ok(next.token > last, `token ${next.token} after ${last}`);
  });

  it('keeps tokens dense across a clean stop', async () => {
    const m1 = open();
    const lease = await m1.claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 });
    m1.release(lease.id, 'ci');
    m1.close();
    assert.equal((await open().claim({ duts: ['rpi'], holder: 'ci', ttlMs: 60_000 })).token, lease.token + 1);
  });
});
