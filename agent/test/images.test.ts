/**
 * The image cache over real gRPC: content-addressed uploads that are never repeated, resumed
 * after a break, checked against their hash, evicted least-recently-used but never while in use,
 * and a full disk that loses nothing already received.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { hashFile } from '../../client/src/image-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { rawImageService } from '../../fixtures/test-support/raw-image-service.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { JigletError } from '../../protocol/src/errors.js';

const MiB = 1024 * 1024;

describe('image cache', function () {
  this.timeout(60_000);
  let t: TestAgent;
  let dir: string;
  const file = (name: string, bytes: number): string => {
    const path = join(dir, name);
    writeFileSync(path, randomBytes(bytes));
    return path;
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-images-'));
    t = await startTestAgent({ imageCacheBytes: 10 * MiB });
  });
  after(async () => {
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads an image once: the second time nothing is sent', async () => {
    const op = t.client('operator');
    const image = file('a.img', 3 * MiB + 17);
    const first = await op.images.upload(image);
    assert.equal(first.sent, 3 * MiB + 17);
    assert.equal(first.sha256, await hashFile(image));
    const again = await t.client('operator2').images.upload(image);
    assert.equal(again.sent, 0);
    const listed = await t.client('viewer').images.list();
    assert.deepEqual(
      listed.images.map((i) => [i.sha256, Number(i.size), i.name]),
      [[first.sha256, 3 * MiB + 17, 'a.img']],
    );
  });

  it('resumes a broken upload where it stopped and checks the whole image', async () => {
    const image = file('b.img', 4 * MiB);
    const bytes = readFileSync(image);
    const sha256 = await hashFile(image);
    // A client that dies after sending 1.5 MiB: the call ends early, the agent keeps the bytes.
    const raw = rawImageService(t.pki, t.address);
    const ended = new Promise<Error | null>((resolve) => {
      const call = raw.uploadImage((err) => resolve(err));
      call.write({ start: { sha256, size: BigInt(bytes.length), name: 'b.img' } });
      call.write({ data: { offset: 0n, data: bytes.subarray(0, MiB) } });
      call.write({ data: { offset: BigInt(MiB), data: bytes.subarray(MiB, MiB + MiB / 2) } });
      call.end();
    });
    const early = await ended;
    raw.close();
    assert.match(early?.message ?? '', /ended at 1572864 of 4194304 bytes; resume it from 1572864/);
    const op = t.client('operator');
    assert.equal((await op.images.stat(sha256)).received, 1.5 * MiB);
    const resumed = await op.images.upload(image);
    assert.equal(resumed.resumedAt, 1.5 * MiB);
    assert.equal(resumed.sent, 2.5 * MiB);
    assert.equal((await op.images.stat(sha256)).present, true);

    // A cancelled upload loses nothing either: the next one completes it.
    const other = file('b2.img', 2 * MiB);
    const stop = new AbortController();
    await errorOf(
      op.images.upload(other, {
        signal: stop.signal,
        onProgress: (p) => {
          if (p.phase === 'upload' && p.done >= MiB) stop.abort();
        },
      }),
    );
    const after = await op.images.upload(other);
    assert.equal(after.resumedAt + after.sent, 2 * MiB);
    await t.client('admin').images.remove(after.sha256);
  });

  it('says so when the file is cut while it is uploaded, and keeps what was sent', async () => {
    const op = t.client('operator');
    // Small enough to leave the cache's other images alone (10 MiB), three pieces long.
    const size = 2.5 * MiB;
    const image = file('cut.img', size);
    const bytes = readFileSync(image);
    const sha256 = await hashFile(image);
    // Cut to 2 MiB once the first piece is sent. The second piece, being read meanwhile, lies
    // below the cut (a read racing a truncation over its own range may see torn data, which the
    // agent's hash would refuse); the third finds the end of the file.
    const err = await errorOf(
      op.images.upload(image, {
        sha256,
        onProgress: (p) => {
          if (p.phase === 'upload' && p.done === MiB) truncateSync(image, 2 * MiB);
        },
      }),
    );
    assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(
      err.message,
      /cut\.img ended at 2097152 of 2621440 bytes while it was uploaded: something is changing it/,
    );
    // Written back whole, it resumes where the agent stopped: what reached the agent before the
    // call ended is kept (how much depends on timing). Until the agent has seen the cancel, a new
    // upload of the image is refused as one in progress, which says to resume when it ends.
    writeFileSync(image, bytes);
    const deadline = Date.now() + 10_000;
    let resumed: Awaited<ReturnType<typeof op.images.upload>> | undefined;
    while (!resumed) {
      const attempt = await op.images.upload(image, { sha256 }).catch((e: unknown) => e as JigletError);
      if (!(attempt instanceof JigletError)) resumed = attempt;
      else if (attempt.code !== 'JIGLET_E_ALREADY_EXISTS' || Date.now() > deadline) throw attempt;
      else await delay(10);
    }
    assert.ok(resumed.resumedAt <= 2 * MiB, `resumed at ${resumed.resumedAt}`);
    assert.equal((await op.images.stat(sha256)).present, true);
    await t.client('admin').images.remove(sha256);
  });

  it('resumes from below what it has (skipping those bytes), and refuses a gap', async () => {
    const image = file('overlap.img', 2 * MiB);
    const bytes = readFileSync(image);
    const sha256 = await hashFile(image);
    const raw = rawImageService(t.pki, t.address);
    /** One upload call: start, then `pieces` as [offset, end]; its answer or its error. */
    const upload = (pieces: [number, number][]) =>
      new Promise<{ err: Error | null; added?: bigint }>((resolve) => {
        const call = raw.uploadImage((err, res) => resolve({ err, added: res?.bytesReceived }));
        call.write({ start: { sha256, size: BigInt(bytes.length), name: 'overlap.img' } });
        for (const [from, to] of pieces)
          call.write({ data: { offset: BigInt(from), data: bytes.subarray(from, to) } });
        call.end();
      });
    try {
      // The agent keeps 1 MiB of an upload that ended early.
      assert.match((await upload([[0, MiB]])).err?.message ?? '', /resume it from 1048576/);
      // A gap is refused with where to continue, and loses nothing.
      const gap = await upload([[MiB + 1, 2 * MiB]]);
      assert.match(
        gap.err?.message ?? '',
        /OUT_OF_RANGE: upload data at offset 1048577, .* continue from 1048576/,
      );
      // A client that asked where to resume while the earlier call was still writing starts
      // below what the agent has: the overlap is skipped, and the whole image checks out.
      const overlap = await upload([[MiB / 2, 2 * MiB]]);
      assert.equal(overlap.err, null);
      assert.equal(overlap.added, BigInt(MiB));
      assert.equal((await t.client('operator').images.stat(sha256)).present, true);
    } finally {
      raw.close();
      await t
        .client('admin')
        .images.remove(sha256)
        .catch(() => undefined);
    }
  });

  it('refuses an upload whose bytes do not match its hash, and keeps nothing of it', async () => {
    const op = t.client('operator');
    const image = file('c.img', MiB);
    const wrong = 'ab'.repeat(32);
    const err = await errorOf(op.images.upload(image, { sha256: wrong }));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(err.message, /hash to [0-9a-f]{64}, not abab/);
    assert.deepEqual(await op.images.stat(wrong), { present: false, size: 0, received: 0 });
    assert.equal((await errorOf(op.images.stat('nope'))).code, 'JIGLET_E_INVALID_ARGUMENT');
  });

  it('evicts the least recently used image for a new one, never one in use', async () => {
    const op = t.client('operator');
    const before = (await op.images.list()).images.map((i) => i.sha256);
    // a.img (oldest use) is pinned as a running flash would pin it; b.img may go.
    const [newest, oldest] = [before[0]!, before.at(-1)!];
    const release = t.agent.images.pin(oldest);
    try {
      await op.images.upload(file('d.img', 5 * MiB));
      const after = (await op.images.list()).images.map((i) => i.sha256);
      assert.ok(after.includes(oldest), 'an image in use was evicted');
      assert.ok(!after.includes(newest), 'the least recently used unpinned image was kept');
      const inUse = await errorOf(t.client('admin').images.remove(oldest));
      assert.equal(inUse.code, 'JIGLET_E_FAILED_PRECONDITION');
      const tooBig = await errorOf(op.images.upload(file('e.img', 11 * MiB)));
      assert.equal(tooBig.code, 'JIGLET_E_RESOURCE_EXHAUSTED');
    } finally {
      release();
    }
    assert.equal((await errorOf(op.images.remove(oldest))).code, 'JIGLET_E_PERMISSION_DENIED');
    await t.client('admin').images.remove(oldest);
    assert.equal(
      (await errorOf(t.client('viewer').images.upload(file('f.img', 10)))).code,
      'JIGLET_E_PERMISSION_DENIED',
    );
  });
});

describe('image cache on a full disk', function () {
  this.timeout(60_000);
  let mountPoint: string;
  let t: TestAgent;
  before(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'jiglet-imgfull-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mountPoint]);
    t = await startTestAgent({ stateDir: join(mountPoint, 'state') });
  });
  after(async () => {
    await t?.stop();
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('answers RESOURCE_EXHAUSTED, keeps what it received, and keeps serving', async () => {
    const work = mkdtempSync(join(tmpdir(), 'jiglet-imgsrc-'));
    try {
      const image = join(work, 'big.img');
      writeFileSync(image, randomBytes(16 * MiB));
      const op = t.client('operator');
      const err = await errorOf(op.images.upload(image));
      assert.equal(err.code, 'JIGLET_E_RESOURCE_EXHAUSTED');
      assert.match(err.message, /disk holding the image cache is full/);
      assert.ok((await op.images.stat(await hashFile(image))).received > 0);
      assert.equal((await op.images.list()).images.length, 0);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
