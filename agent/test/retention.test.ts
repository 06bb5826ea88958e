/**
 * Bounded state (issue 11): an agent that finds 20 000 jobs' worth of records — a few hundred
 * run for real, the rest written beforehand through the same JobRecords and OutputLog code, as
 * months of power cycles would leave them — keeps its index, its memory and its job folders
 * within the configured bounds, answers NOT_FOUND "pruned" for what it removed, keeps the job a
 * held lease points to, removes agent-owned jobs before users', and pages ListJobs over real
 * gRPC so that every kept job comes exactly once.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { JigletClient } from '../../client/src/jiglet-client.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { type Job, JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import { AGENT_OWNER } from '../src/jig/job-keeper.js';
import { type JobRecord, JobRecords } from '../src/jobs/job-records.js';
import type { JobStateName } from '../src/jobs/job-state.js';
import { diskUsage } from '../src/jobs/retention.js';
import type { RetentionPolicy } from '../src/jobs/retention-policy.js';
import { LeaseManager } from '../src/leases/lease-manager.js';
import { OutputLog } from '../src/output/output-log.js';

const DAY = 24 * 3600 * 1000;
const MiB = 1024 * 1024;
const REAL_JOBS = 100;
const TOTAL_JOBS = 20_000;
const POLICY: Partial<RetentionPolicy> = {
  maxJobs: 3000,
  maxBytes: 40 * MiB,
  pruneEveryJobs: 40,
};

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = (): number => {
  gc();
  return process.memoryUsage().heapUsed;
};

/** What a synthesized job is, for the assertions. */
interface Made {
  id: string;
  group: 'agent-old' | 'user-old' | 'agent-young' | 'user-young' | 'big' | 'pinned';
  owner: string;
  dut: string;
  state: JobStateName;
  createdAt: number;
}

/** Writes one finished job the way the supervisor does: folder, output log, record. */
function writeJob(records: JobRecords, made: Made, n: number, args = ['power', 'cycle']): void {
  const dir = records.createDir(made.id);
  const log = OutputLog.create(dir);
  const out = Buffer.from(`power cycle ${n}: ok\n`);
  log.append('stdout', out);
  log.close();
  const record: JobRecord = {
    id: made.id,
    owner: made.owner,
    spec: {
      command: 'jig-driver',
      args,
      env: {},
      cwd: '',
      dut: made.dut,
      limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
      timeoutMs: 0,
      stdin: false,
    },
    state: made.state,
    ...(made.state === 'exited' ? { exitCode: 0 } : {}),
    oomKilled: false,
    containment: 'none',
    createdAt: made.createdAt,
    startedAt: made.createdAt + 10,
    endedAt: made.createdAt + 100,
    outputBytes: out.length,
  };
  records.save(record);
}

describe('retention of job records', function () {
  this.timeout(60_000);
  let t: TestAgent;
  let c: JigletClient;
  let stateDir: string;
  const made: Made[] = [];
  const real: string[] = [];
  let leaseFrom = 0;
  let young: Made[] = [];
  let heapBefore = 0;

  before(async () => {
    stateDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'jiglet-retention-'));
    // A lease on bench-1 held across the agent's start: the job that ran under it must stay.
    const leases = new LeaseManager({ stateDir });
    const lease = await leases.claim({ duts: ['bench-1'], holder: 'operator', ttlMs: 24 * 3600 * 1000 });
    leases.close();
    leaseFrom = lease.acquiredAt;

    const records = new JobRecords(stateDir);
    const now = Date.now();
    const synthetic = TOTAL_JOBS - REAL_JOBS;
    const groups: [Made['group'], number, string[], number, number][] = [
      // group, count, owners, oldest (days ago), newest (days ago)
      ['agent-old', 8000, [AGENT_OWNER], 30, 3],
      ['user-old', 5000, ['operator', 'ci-bot'], 30, 15],
      ['agent-young', 3000, [AGENT_OWNER], 1.9, 0.01],
      ['user-young', synthetic - 16_021, ['operator', 'ci-bot'], 13, 0.01],
      ['big', 20, ['bulk'], 0.009, 0.001],
    ];
    const bigArgs = ['x'.repeat(110 * 1024), 'y'.repeat(110 * 1024)];
    const states: JobStateName[] = ['exited', 'exited', 'exited', 'failed', 'stopped', 'lost'];
    let n = 0;
    for (const [group, count, owners, oldest, newest] of groups) {
      for (let i = 0; i < count; i++, n++) {
        const m: Made = {
          id: `${group}-${String(i).padStart(5, '0')}-${n.toString(16)}`,
          group,
          owner: owners[i % owners.length]!,
          dut: ['', 'bench-1', 'bench-2'][i % 3]!,
          state: states[i % states.length]!,
          createdAt: Math.round(now - (oldest - ((oldest - newest) * i) / count) * DAY),
        };
        made.push(m);
        writeJob(records, m, n, group === 'big' ? bigArgs : undefined);
      }
    }
    // An agent-owned job (a power cycle) that ran under the held lease.
    const pinned: Made = {
      id: 'pinned-power-cycle',
      group: 'pinned',
      owner: AGENT_OWNER,
      dut: 'bench-1',
      state: 'exited',
      createdAt: leaseFrom + 1,
    };
    made.push(pinned);
    writeJob(records, pinned, n);
    assert.equal(made.length, synthetic);
    // Users' jobs keep their working folder in <state>/work/<id>: a few with something in it.
    young = made.filter((m) => m.group === 'user-young');
    for (const m of [...young.slice(0, 5), ...young.slice(-5)]) {
      mkdirSync(join(stateDir, 'work', m.id), { recursive: true });
      writeFileSync(join(stateDir, 'work', m.id, 'artifact.bin'), Buffer.alloc(64 * 1024, 1));
    }
    heapBefore = heapAfterGc();

    t = await startTestAgent({ stateDir, retention: POLICY });
    c = t.client('operator');
    // The rest for real, a few at a time, while the first prune pass runs in the background.
    for (let i = 0; i < REAL_JOBS; i += 20) {
      const batch = await Promise.all(
        Array.from({ length: 20 }, (_, k) => c.start({ command: 'echo', args: [`real ${i + k}`] })),
      );
      for (const job of batch) real.push(job.id);
      await Promise.all(batch.map((job) => t.agent.supervisor.ended(job.id)));
    }
  });

  after(async () => {
    await t?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('prunes to the configured bounds in the background, agent-owned jobs first', async () => {
    const report = await t.agent.retention.prune();
    const { supervisor, retention } = t.agent;
    // The start, the real jobs (one pass per 40 ended) and this call: pruning never waited for a request.
    assert.ok(retention.totals.passes >= 3, `only ${retention.totals.passes} prune passes ran`);
    assert.ok(retention.totals.pruned > TOTAL_JOBS - POLICY.maxJobs!, `pruned ${retention.totals.pruned}`);
    assert.equal(report.keptJobs, supervisor.index.size);

    // Memory: live jobs plus a compact index within the bound, not 20 000 records.
    assert.equal(supervisor.list().length, 0);
    assert.ok(supervisor.index.size <= POLICY.maxJobs!, `${supervisor.index.size} jobs indexed`);
    const heapGrowth = heapAfterGc() - heapBefore;
    // ~6 MiB measured (the agent, its gRPC server, 2 000 index entries); 20 000 full records
    // held in memory, as before issue 11, would add ~15 MiB more (measured with these records).
    assert.ok(heapGrowth < 16 * MiB, `heap grew ${(heapGrowth / MiB).toFixed(1)} MiB`);

    // Disk: every job folder and work folder left, as du counts them, within the size bound.
    const jobsDir = join(stateDir, 'jobs');
    const folders = readdirSync(jobsDir);
    assert.equal(folders.length, supervisor.index.size);
    const workDirs = readdirSync(join(stateDir, 'work')).map((f) => join(stateDir, 'work', f));
    const all = [...folders.map((f) => join(jobsDir, f)), ...workDirs];
    let onDisk = 0;
    for (let i = 0; i < all.length; i += 64) {
      for (const size of await Promise.all(all.slice(i, i + 64).map((f) => diskUsage(f)))) onDisk += size;
    }
    assert.ok(onDisk <= POLICY.maxBytes!, `job folders take ${(onDisk / MiB).toFixed(1)} MiB`);
    assert.ok(supervisor.index.bytes >= onDisk, 'the index counts less than the folders take');

    // Who stayed: every real job, the pinned one, and the newest users' jobs; no other agent job.
    const kept = new Set(folders);
    for (const id of real) assert.ok(kept.has(id), `real job ${id} was pruned`);
    assert.ok(kept.has('pinned-power-cycle'), 'the job under a held lease was pruned');
    assert.deepEqual(
      t.agent.leases.list().map((l) => l.dut),
      ['bench-1'],
    );
    const keptMade = made.filter((m) => kept.has(m.id));
    assert.deepEqual([...new Set(keptMade.map((m) => m.group))].sort(), ['big', 'pinned', 'user-young']);
    // Oldest first: the kept users' jobs are the newest ones.
    const firstKept = young.findIndex((m) => kept.has(m.id));
    assert.ok(firstKept > 0);
    assert.ok(
      young.slice(firstKept).every((m) => kept.has(m.id)),
      'an older user job outlived a newer one',
    );

    // A pruned user's job loses its working folder too; a kept one's is measured with it.
    for (const m of young.slice(0, 5)) assert.equal(existsSync(join(stateDir, 'work', m.id)), false);
    for (const m of young.slice(-5)) {
      assert.ok(existsSync(join(stateDir, 'work', m.id)));
      const entry = supervisor.index.get(m.id)!;
      assert.ok(entry.measured && entry.bytes >= 64 * 1024, `${m.id}: ${entry.bytes} bytes`);
    }

    const metrics = await t.agent.metrics.registry.metrics();
    assert.match(metrics, new RegExp(`^jiglet_state_jobs ${supervisor.index.size}$`, 'm'));
    assert.match(metrics, new RegExp(`^jiglet_state_bytes\\{part="jobs"\\} ${supervisor.index.bytes}$`, 'm'));
    assert.match(metrics, new RegExp(`^jiglet_jobs_pruned_total ${retention.totals.pruned}$`, 'm'));
  });

  it('answers NOT_FOUND for a pruned job, saying the retention policy pruned it', async () => {
    const gone = ['agent-old', 'user-old', 'agent-young'].map((g) => made.find((m) => m.group === g)!.id);
    gone.push(made.find((m) => m.group === 'user-young')!.id);
    for (const id of gone) {
      for (const call of [c.get(id), c.stop(id), collect(c, id)]) {
        await assert.rejects(call, (err: Error & { code?: string }) => {
          assert.equal(err.code, 'JIGLET_E_NOT_FOUND');
          assert.match(err.message, /pruned by the retention policy/);
          return true;
        });
      }
    }
    // An id the agent never had says so, and names pruning as the other possibility.
    await assert.rejects(c.get('00000000-0000-4000-8000-000000000000'), /never existed.*retention policy/);
    // What is kept still reads in full, from disk.
    assert.equal((await collect(c, real[0]!)).all.toString(), 'real 0\n');
    assert.equal((await c.get('pinned-power-cycle')).state, JobState.JOB_STATE_EXITED);
  });

  it('pages ListJobs over gRPC: every kept job exactly once, newest first, filters applied', async () => {
    const expected = t.agent.supervisor.index
      .entries()
      .reverse()
      .map((e) => e.id);
    const seen: Job[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await c.listPage({ pageSize: 700, pageToken });
      assert.ok(page.jobs.length <= 700);
      seen.push(...page.jobs);
      pageToken = page.nextPageToken;
      pages++;
      // A job started between two pages is newer than the cursor: it shifts no later page.
      if (pages === 1) real.push((await c.start({ command: 'true' })).id);
    } while (pageToken);
    // The page holding the 220 KiB jobs is cut by size, which may take one page more.
    assert.ok(pages >= Math.ceil(expected.length / 700) && pages <= Math.ceil(expected.length / 700) + 1);
    assert.deepEqual(
      seen.map((j) => j.id),
      expected,
    );

    // Default and largest page sizes.
    assert.equal((await c.listPage()).jobs.length, 100);
    // Past the 220 KiB jobs (which the first page is cut at), a page holds at most 1000.
    const front = await c.listPage({ pageSize: 200 });
    assert.ok(front.jobs.length < 200);
    const largest = await c.listPage({ pageSize: 100_000, pageToken: front.nextPageToken });
    assert.equal(largest.jobs.length, Math.min(1000, expected.length - front.jobs.length));

    // Filters, through the client's own paging.
    const kept = new Set(expected);
    const keptMade = made.filter((m) => kept.has(m.id));
    const byOwner = await c.list({ owner: 'ci-bot' });
    assert.deepEqual(
      byOwner.map((j) => j.id).sort(),
      keptMade
        .filter((m) => m.owner === 'ci-bot')
        .map((m) => m.id)
        .sort(),
    );
    const onBench1 = await c.list({
      dut: 'bench-1',
      states: [JobState.JOB_STATE_FAILED, JobState.JOB_STATE_EXITED],
    });
    assert.deepEqual(
      onBench1.map((j) => j.id).sort(),
      keptMade
        .filter((m) => m.dut === 'bench-1' && (m.state === 'failed' || m.state === 'exited'))
        .map((m) => m.id)
        .sort(),
    );
    assert.ok(onBench1.some((j) => j.id === 'pinned-power-cycle'));
    assert.equal((await c.list({ owner: 'operator', limit: 5 })).length, 5);

    await assert.rejects(
      c.listPage({ pageToken: 'not-a-token' }),
      /page_token is not one this agent gave out/,
    );
  });

  it('cuts a page at 4 MiB of records, whatever page_size asks, and goes on from there', async () => {
    // 20 jobs with 220 KiB of arguments each: 4.3 MiB, more than one page by size.
    const big = made.filter((m) => m.group === 'big').map((m) => m.id);
    const first = await c.listPage({ owner: 'bulk', pageSize: 20 });
    assert.ok(first.jobs.length < 20 && first.jobs.length >= 15, `${first.jobs.length} jobs on the page`);
    assert.notEqual(first.nextPageToken, '');
    const second = await c.listPage({ owner: 'bulk', pageToken: first.nextPageToken });
    assert.equal(second.nextPageToken, '');
    assert.deepEqual(
      [...first.jobs, ...second.jobs].map((j) => j.id),
      big.reverse(),
    );
  });

  it('lets jigctl list read every page by itself, with its filters', async () => {
    const kept = new Set(t.agent.supervisor.index.entries().map((e) => e.id));
    const failedOfCi = made.filter((m) => kept.has(m.id) && m.owner === 'ci-bot' && m.state === 'failed');
    assert.ok(failedOfCi.length > 100, 'the filter should span more than one default page');
    const run = await runJigctl(t, ['list', '-o', 'json', '--owner', 'ci-bot', '--state', 'failed']);
    assert.equal(run.code, 0, run.stderr);
    const listed = (JSON.parse(run.stdout) as { id: string }[]).map((j) => j.id);
    assert.deepEqual(listed.sort(), failedOfCi.map((m) => m.id).sort());
  });
});
