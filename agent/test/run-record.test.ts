/**
 * The run record on a virtual jig: a lease in which the DUT is flashed, powered on, logged in to
 * and runs a job, then released; its timeline (by lease and by job) holds every kind of event
 * with sane times, flash progress, job spans and timestamped serial lines, for a viewer too, and
 * survives an agent restart. Unknown leases and jobs are NOT_FOUND.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobRole, type Timeline, TimelineEventKind } from '../../client/src/record-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { JournalFile } from '../src/timeline/journal-file.js';

const MiB = 1024 * 1024;
const K = TimelineEventKind;

/** The events of one kind, with their fields. */
function eventsOf(t: Timeline, kind: TimelineEventKind): { at: number; fields: Record<string, string> }[] {
  return t.events.filter((e) => e.kind === kind).map((e) => ({ at: e.at!.getTime(), fields: e.fields }));
}

function assertInSpan(t: Timeline, at: number, what: string): void {
  assert.ok(
    at >= t.from!.getTime() && at <= t.to!.getTime(),
    `${what} at ${new Date(at).toISOString()} is outside ${t.from!.toISOString()} → ${t.to!.toISOString()}`,
  );
}

describe('the run record', function () {
  this.timeout(120_000);
  let v: VirtualJig;
  let dir: string;
  let image: string;
  let leaseId: string;
  let jobId: string;
  let byLease: Timeline;
  const after2: TestAgent[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-record-'));
    image = (await buildImage({ out: join(dir, 'os.img'), version: '5.1.0', sizeBytes: 48 * MiB })).path;
    v = await startVirtualJig([{ name: 'vdut-a', storageBytes: 64 * MiB }]);
  });
  after(async () => {
    for (const t of after2) await t.stop();
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records a leased run: flash, power on, login, a job, release', async () => {
    const op = v.t.client('operator');
    const lease = await op.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    leaseId = lease.id;
    op.lease = lease.id;
    await op.flash('vdut-a', image);
    const on = await op.jig.power('vdut-a', 'on');
    await op.jig.expect('vdut-a', 'login: $', { offset: on.serialOffset, timeoutMs: 10_000 });
    const job = await op.start({ command: 'sh', args: ['-c', 'echo on the jig; exit 3'], dut: 'vdut-a' });
    jobId = job.id;
    assert.equal((await collect(op, job.id, { follow: true })).finished?.exitCode, 3);
    // Held: the timeline runs to now.
    const held = await op.records.timeline({ leaseId });
    assert.equal(held.ongoing, true);
    await op.leases.release(lease.id);
    op.lease = undefined;

    const t = await op.records.timeline({ leaseId });
    byLease = t;
    assert.equal(t.leaseId, leaseId);
    assert.equal(t.dut, 'vdut-a');
    assert.equal(t.ongoing, false);
    assert.ok(t.from!.getTime() <= t.to!.getTime());
    for (const e of t.events) assertInSpan(t, e.at!.getTime(), `event ${e.summary}`);
    const times = t.events.map((e) => e.at!.getTime());
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
      'events are in time order',
    );

    // Lease: granted at the start, released at the end.
    const leaseEvents = eventsOf(t, K.TIMELINE_EVENT_KIND_LEASE);
    assert.deepEqual(
      leaseEvents.map((e) => e.fields.change),
      ['granted', 'ended'],
    );
    assert.equal(leaseEvents[1]!.fields.reason, 'released');
    assert.equal(leaseEvents[0]!.at, t.from!.getTime());
    assert.equal(leaseEvents[1]!.at, t.to!.getTime());
    assert.equal(t.leases.length, 1);
    assert.equal(t.leases[0]!.endReason, 'released');

    // Power: off before the flash, on after it; the intervals cover the span in order.
    const power = eventsOf(t, K.TIMELINE_EVENT_KIND_POWER).map((e) => e.fields.state);
    assert.deepEqual(power, ['off', 'on']);
    assert.ok(t.power.some((p) => p.state === 'on') && t.power.some((p) => p.state === 'off'));
    assert.equal(t.power[0]!.from!.getTime(), t.from!.getTime());
    assert.equal(t.power.at(-1)!.to!.getTime(), t.to!.getTime());
    for (let i = 1; i < t.power.length; i++)
      assert.equal(t.power[i]!.from!.getTime(), t.power[i - 1]!.to!.getTime(), 'power intervals touch');

    // Flash: started and done, progress samples in time order with bytes that only grow.
    const flash = eventsOf(t, K.TIMELINE_EVENT_KIND_FLASH);
    assert.deepEqual(
      flash.map((e) => e.fields.phase),
      ['started', 'done'],
    );
    assert.ok(t.flash.length >= 3, `only ${t.flash.length} flash samples`);
    for (let i = 1; i < t.flash.length; i++) {
      assert.ok(t.flash[i]!.at!.getTime() >= t.flash[i - 1]!.at!.getTime(), 'samples in time order');
      assert.ok(t.flash[i]!.bytesWritten >= t.flash[i - 1]!.bytesWritten, 'bytes written never shrink');
    }
    assert.equal(t.flash.at(-1)!.phase, 'done');
    assert.ok(t.flash.at(-1)!.bytesWritten > 0n);
    assert.ok(
      t.flash.some((s) => s.phase === 'write' && s.mbPerS > 0),
      'a write rate was recorded',
    );
    for (const s of t.flash) assertInSpan(t, s.at!.getTime(), `flash sample ${s.phase}`);

    // Jobs: the command (exit 3), the flash and the DUT's power driver, each with its role.
    const mine = t.jobs.find((j) => j.jobId === jobId);
    assert.equal(mine?.role, JobRole.JOB_ROLE_COMMAND);
    assert.equal(mine?.exitCode, 3);
    assert.equal(mine?.state, 'exited');
    assert.ok(mine!.started!.getTime() <= mine!.ended!.getTime());
    assert.ok(t.jobs.some((j) => j.role === JobRole.JOB_ROLE_FLASH && j.jobId === flash[0]!.fields.job));
    // One long-lived driver job served both switches (the flash's power off and the power on);
    // each is a span of its own, named by what it did and owned by whoever asked.
    const powerJobs = t.jobs.filter((j) => j.role === JobRole.JOB_ROLE_POWER);
    assert.deepEqual(
      powerJobs.map((j) => [j.name, j.owner, j.jobId === on.jobId]),
      [
        ['power off', 'operator', true],
        ['power on', 'operator', true],
      ],
    );
    assert.ok(!t.jobs.some((j) => j.command.includes(' serial ')), 'the serial capture is not a job row');
    const jobEvents = eventsOf(t, K.TIMELINE_EVENT_KIND_JOB).filter((e) => e.fields.job === jobId);
    assert.deepEqual(
      jobEvents.map((e) => e.fields.state),
      ['running', 'exited'],
    );
    assert.equal(jobEvents[1]!.fields.exit_code, '3');

    // Expect: the login prompt matched.
    const expects = eventsOf(t, K.TIMELINE_EVENT_KIND_EXPECT);
    assert.equal(expects.length, 1);
    assert.equal(expects[0]!.fields.matched, 'true');
    assert.match(expects[0]!.fields.line ?? '', /login: $/);

    // Serial: the boot of the flashed version and the prompt, timestamped in order, in the span.
    const text = t.serial.map((s) => s.text);
    assert.ok(
      text.some((l) => l.includes('Booting VirtualOS 5.1.0 from disk')),
      text.join('\n'),
    );
    assert.ok(text.some((l) => /login: $/.test(l)));
    for (let i = 1; i < t.serial.length; i++) {
      assert.ok(t.serial[i]!.at!.getTime() >= t.serial[i - 1]!.at!.getTime(), 'serial lines in time order');
      if (t.serial[i]!.capture === t.serial[i - 1]!.capture)
        assert.ok(t.serial[i]!.offset >= t.serial[i - 1]!.offset, 'offsets grow within a capture');
    }
    for (const s of t.serial) assertInSpan(t, s.at!.getTime(), `serial line ${s.text}`);
    assert.equal(t.serialTruncated, false);
    assert.ok(t.captureJobs.length >= 1);
    // A line's offset is where `serial tail --offset` finds it again.
    const boot = t.serial.find((s) => s.text.includes('Booting VirtualOS 5.1.0'))!;
    const again = await op.jig.expect('vdut-a', 'Booting VirtualOS 5\\.1\\.0', {
      offset: Number(boot.offset),
      timeoutMs: 2000,
    });
    assert.equal(Number(again.lineOffset), Number(boot.offset));
  });

  it("gives a job's own span, with its DUT's events in it", async () => {
    const op = v.t.client('operator');
    const t = await op.records.timeline({ jobId });
    assert.equal(t.jobId, jobId);
    assert.equal(t.dut, 'vdut-a');
    const job = t.jobs.find((j) => j.jobId === jobId)!;
    assert.equal(t.from!.getTime(), job.created!.getTime());
    assert.equal(t.to!.getTime(), job.ended!.getTime());
    assert.deepEqual(
      eventsOf(t, K.TIMELINE_EVENT_KIND_JOB)
        .filter((e) => e.fields.job === jobId)
        .map((e) => e.fields.state),
      ['running', 'exited'],
    );
    // The flash and the lease grant were before the job: not in its span.
    assert.equal(eventsOf(t, K.TIMELINE_EVENT_KIND_FLASH).length, 0);
    assert.equal(eventsOf(t, K.TIMELINE_EVENT_KIND_LEASE).length, 0);
    assert.equal(t.leases.length, 1, 'the lease it ran under overlaps it');
    for (const s of t.serial) assertInSpan(t, s.at!.getTime(), 'serial line');

    // A job without a DUT has its start and end from its record.
    const plain = await op.start({ command: 'true' });
    await collect(op, plain.id, { follow: true });
    const p = await op.records.timeline({ jobId: plain.id });
    assert.equal(p.dut, '');
    assert.equal(p.jobs.length, 1);
    assert.deepEqual(
      eventsOf(p, K.TIMELINE_EVENT_KIND_JOB).map((e) => e.fields.state),
      ['running', 'exited'],
    );
  });

  it('lets a viewer read, and says NOT_FOUND for a lease or job it never had', async () => {
    const viewer = v.t.client('viewer');
    const t = await viewer.records.timeline({ leaseId }, { includeSerial: false });
    assert.equal(t.events.length, byLease.events.length);
    assert.equal(t.serial.length, 0);
    const lease = await errorOf(viewer.records.timeline({ leaseId: '00000000-0000-4000-8000-000000000000' }));
    assert.equal(lease.code, 'JIGLET_E_NOT_FOUND');
    assert.match(lease.message, /no lease 00000000-/);
    const job = await errorOf(viewer.records.timeline({ jobId: 'no-such-job' }));
    assert.equal(job.code, 'JIGLET_E_NOT_FOUND');
    assert.match(job.message, /no job/);
  });

  it('keeps the journal as JSON lines in the state directory', () => {
    const lines = readFileSync(join(v.t.stateDir, 'records', 'vdut-a.jsonl'), 'utf8')
      .trim()
      .split('\n');
    const kinds = new Set(lines.map((l) => (JSON.parse(l) as { kind: string }).kind));
    for (const kind of ['lease', 'power', 'flash', 'flash-progress', 'job', 'expect', 'capture'])
      assert.ok(kinds.has(kind), `no ${kind} entry in the journal`);
    assert.ok(readFileSync(join(v.t.stateDir, 'records', '_leases.jsonl'), 'utf8').includes(leaseId));
  });

  it('bounds a journal: rotated at its size, one old file kept, a torn last line skipped', () => {
    const jdir = mkdtempSync(join(dir, 'journal-'));
    const journal = new JournalFile(jdir, 'dut-x', 1000);
    for (let i = 0; i < 100; i++) journal.append({ at: i, kind: 'power', pad: 'x'.repeat(50) });
    journal.close();
    assert.deepEqual(readdirSync(jdir).sort(), ['dut-x.1.jsonl', 'dut-x.jsonl']);
    for (const f of readdirSync(jdir)) assert.ok(statSync(join(jdir, f)).size <= 1000);
    const kept = journal.lines().map((l) => (JSON.parse(l) as { at: number }).at);
    assert.equal(kept.at(-1), 99);
    assert.deepEqual(
      kept,
      [...kept].sort((a, b) => a - b),
      'old file first, then the current one',
    );
    assert.ok(kept.length >= 14 && kept.length < 100, `${kept.length} entries kept`);
    // A crash mid-append leaves a torn line; the next append starts on a line of its own.
    appendFileSync(journal.path, '{"at":100,"kind":"pow');
    journal.append({ at: 101, kind: 'power' });
    journal.close();
    assert.equal(JSON.parse(journal.lines().at(-1)!).at, 101);
  });

  it('survives an agent restart', async () => {
    await v.t.agent.stop(1000);
    // The same state directory, now without the jig: the record alone must tell the story.
    const t2 = await startTestAgent({ stateDir: v.t.stateDir });
    after2.push(t2);
    const t = await t2.client('viewer').records.timeline({ leaseId });
    assert.deepEqual(
      t.events.map((e) => e.summary),
      byLease.events.map((e) => e.summary),
    );
    assert.deepEqual(
      t.serial.map((s) => [s.at, s.offset, s.text]),
      byLease.serial.map((s) => [s.at, s.offset, s.text]),
    );
    assert.equal(t.flash.length, byLease.flash.length);
    assert.deepEqual(
      t.jobs.map((j) => j.jobId),
      byLease.jobs.map((j) => j.jobId),
    );
    assert.equal((await t2.client('viewer').records.timeline({ jobId })).jobId, jobId);
  });
});
