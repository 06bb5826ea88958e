/**
 * Writes that fail inside timers and background work must not end the agent (issue 11 §5). A
 * lease journal on a full disk (a real 4 MiB tmpfs): an expiry whose end and whose next grant
 * cannot be recorded ends the lease anyway and fails the waiting claim, leaving no lease without
 * an expiry. A flash whose storage state cannot be saved at its end is still complete.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';

const MiB = 1024 * 1024;
/** tmpfs allocates whole pages: a file whose size is a multiple of this has no room left in it. */
const PAGE = 4096;

/**
 * Collects unhandled rejections while a test runs. Mocha forwards one from code under test to
 * `process` without failing anything, so an in-process agent's rejection would go unseen; the
 * real `jiglet serve` would die of it.
 */
function watchUnhandled(): { reasons: unknown[]; stop: () => void } {
  const reasons: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    reasons.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  return { reasons, stop: () => process.off('unhandledRejection', onRejection) };
}

/** Writes `path` until the file system is full; returns the bytes written. */
function fillUp(path: string): number {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  let total = 0;
  try {
    for (;;) total += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return total;
}

describe('crash paths: a lease journal on a full disk', function () {
  this.timeout(30_000);
  let mountPoint: string;
  let t: TestAgent;
  before(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'jiglet-full-leases-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint]);
    const jig = parseJigDescription(
      JSON.stringify({ duts: [{ name: 'bench-a', power: { driver: 'command', on: 'true', off: 'true' } }] }),
      'lab.yaml',
    );
    t = await startTestAgent({ jig, stateDir: join(mountPoint, 'state') });
  });
  after(async () => {
    await t?.stop();
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('ends an expired lease, fails the waiting claim it cannot record, and grants again once there is room', async () => {
    const unhandled = watchUnhandled();
    const first = t.client('operator');
    const second = t.client('operator2');
    await first.leases.claim({ dut: 'bench-a', ttlMs: 1000 });
    const waiting = errorOf(second.leases.claim({ dut: 'bench-a', ttlMs: 60_000, waitMs: 20_000 }));
    // The journal's last page is filled with blank lines (which it skips), then the disk: the next
    // journal line needs a page there is not.
    const journal = join(t.stateDir, 'leases.jsonl');
    const size = statSync(journal).size;
    if (size % PAGE !== 0) appendFileSync(journal, '\n'.repeat(PAGE - (size % PAGE)));
    const filler = join(mountPoint, 'filler');
    assert.ok(fillUp(filler) > 0);

    // The first lease expires in a timer: its end cannot be recorded, and neither can the grant
    // to the claim waiting for it, which is told why instead of the agent dying.
    const refused = await waiting;
    assert.equal(refused.code, 'JIGLET_E_RESOURCE_EXHAUSTED', refused.message);
    assert.match(
      refused.message,
      /no space left on the jig host to record the lease of bench-a for operator2, so it was not granted/,
    );
    // No lease is left held without an expiry: the DUT is free, and a claim is refused the same way.
    assert.deepEqual(await first.leases.list(), []);
    assert.equal(
      (await errorOf(first.leases.claim({ dut: 'bench-a', ttlMs: 60_000 }))).code,
      'JIGLET_E_RESOURCE_EXHAUSTED',
    );

    rmSync(filler);
    const lease = await second.leases.claim({ dut: 'bench-a', ttlMs: 60_000 });
    assert.equal((await second.leases.list())[0]?.id, lease.id);
    await second.leases.release(lease.id);
    unhandled.stop();
    assert.deepEqual(unhandled.reasons, []);
  });
});

describe('crash paths: a flash whose storage state cannot be saved', function () {
  this.timeout(30_000);
  let t: TestAgent;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-flash-save-'));
    writeFileSync(join(dir, 'card'), '');
    truncateSync(join(dir, 'card'), 4 * MiB);
    const jig = parseJigDescription(
      JSON.stringify({
        duts: [
          {
            name: 'card-a',
            storage: {
              mux: { driver: 'command', host: 'true', dut: 'true' },
              device: { path: join(dir, 'card') },
            },
          },
        ],
      }),
      'lab.yaml',
    );
    t = await startTestAgent({ jig });
  });
  after(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('completes the flash, keeps the state in memory and keeps serving', async () => {
    const unhandled = watchUnhandled();
    const op = t.client('operator');
    const image = join(dir, 'small.img');
    writeFileSync(image, randomBytes(MiB));
    const uploaded = await op.images.upload(image);
    const started = await op.jig.flash('card-a', { imageSha256: uploaded.sha256, verify: false });
    // Its state file becomes a directory the atomic save cannot rename over: the save at the
    // flash's end fails, in a callback nobody awaits.
    const stateFile = join(t.stateDir, 'duts', 'card-a.json');
    rmSync(stateFile);
    mkdirSync(stateFile);
    writeFileSync(join(stateFile, 'blocker'), '');
    const { finished } = await collect(op, started.jobId, { follow: true });
    assert.equal(finished?.exitCode, 0);
    const dut = (await op.jig.duts())[0]!;
    assert.equal(dut.storage?.dirty, false);
    assert.equal(dut.storage?.lastImageSha256, uploaded.sha256);
    unhandled.stop();
    assert.deepEqual(unhandled.reasons, []);
  });
});
