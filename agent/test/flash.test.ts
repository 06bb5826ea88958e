/**
 * Flashing end to end on a virtual DUT whose SD card is a real loop device behind a virtual mux:
 * upload once, flash as a job with progress, boot what was flashed; compressed images; bad
 * images and a medium that never appears fail clearly; an interrupted flash leaves the DUT dirty.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlashFailedError, type FlashProgress } from '../../client/src/flash-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { rawImageService } from '../../fixtures/test-support/raw-image-service.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import type { ImageServiceClient, UploadImageRequest } from '../../protocol/gen/jiglet/v1/images.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

const MiB = 1024 * 1024;

describe('flashing a virtual DUT', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  let dir: string;
  let good: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-flash-'));
    good = (await buildImage({ out: join(dir, 'good.img'), version: '2.0.1', sizeBytes: 16 * MiB })).path;
    v = await startVirtualJig([
      { name: 'vdut-a', storageBytes: 32 * MiB },
      { name: 'vdut-b', storageBytes: 32 * MiB },
    ]);
  });
  after(async () => {
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const bootsVersion = async (version: string): Promise<void> => {
    const op = v.t.client('operator');
    const on = await op.jig.power('vdut-a', 'on');
    await op.jig.expect('vdut-a', `Booting VirtualOS ${version.replace(/\./g, '\\.')} from disk`, {
      offset: on.serialOffset,
      timeoutMs: 10_000,
    });
    await op.jig.expect('vdut-a', 'login: $', { offset: on.serialOffset, timeoutMs: 10_000 });
  };

  it('uploads, flashes with progress, verifies, and the DUT boots the image', async () => {
    const op = v.t.client('operator');
    const phases: string[] = [];
    let last: FlashProgress | undefined;
    const result = await op.flash('vdut-a', good, {
      onEvent: (e) => {
        if (e.type !== 'flash') return;
        last = e.progress;
        if (phases.at(-1) !== e.progress.phase) phases.push(e.progress.phase);
      },
    });
    assert.equal(result.uploaded, 16 * MiB);
    assert.ok(phases.includes('write') && phases.includes('verify'), phases.join(','));
    assert.equal(phases.at(-1), 'done');
    assert.ok((last?.bytesWritten ?? 0) < 16 * MiB, 'zero blocks were written');
    const dut = (await op.jig.duts())[0]!;
    assert.equal(dut.storage?.dirty, false);
    assert.equal(dut.storage?.lastImageSha256, result.imageSha256);
    assert.equal(dut.storage?.lastJobId, result.jobId);
    await bootsVersion('2.0.1');
    // The same image again is a cache hit: nothing is uploaded.
    const again = await op.flash('vdut-a', good);
    assert.equal(again.uploaded, 0);
  });

  it('flashes .gz, .xz and .zst images in one streaming pass', async () => {
    const op = v.t.client('operator');
    for (const [tool, version] of [
      ['gzip', '3.0.0'],
      ['xz', '3.0.1'],
      ['zstd', '3.0.2'],
    ] as const) {
      const raw = (await buildImage({ out: join(dir, `${tool}.img`), version, sizeBytes: 8 * MiB })).path;
      execFileSync(tool, tool === 'zstd' ? ['-q', '-f', '--rm', raw] : ['-f', raw]);
      const compressed = `${raw}.${tool === 'gzip' ? 'gz' : tool === 'xz' ? 'xz' : 'zst'}`;
      await op.flash('vdut-a', compressed);
      await bootsVersion(version);
    }
  });

  it('refuses what is not an image, a truncated .xz and a medium that never appears, and says why', async () => {
    const op = v.t.client('operator');
    const html = join(dir, 'page.img');
    writeFileSync(html, `<!DOCTYPE html><html>${'x'.repeat(5000)}</html>`);
    const notImage = await errorOf(op.flash('vdut-a', html));
    assert.ok(notImage instanceof FlashFailedError, String(notImage));
    assert.match(notImage.message, /not a disk image/i);
    assert.equal(notImage.driverCode, 'JIGLET_E_INVALID_ARGUMENT');

    const raw = (await buildImage({ out: join(dir, 'trunc.img'), version: '4.0.0', sizeBytes: 8 * MiB }))
      .path;
    execFileSync('xz', ['-f', raw]);
    truncateSync(`${raw}.xz`, 20_000);
    const truncated = await errorOf(op.flash('vdut-a', `${raw}.xz`));
    assert.match(truncated.message, /truncated|corrupt/i);
    // A flash that did not complete leaves the medium dirty until one does.
    assert.equal((await op.jig.duts())[0]!.storage?.dirty, true);
    await op.flash('vdut-a', good);
    assert.equal((await op.jig.duts())[0]!.storage?.dirty, false);
  });

  /** An upload driven by hand (ImageService.UploadImage), so a test decides what is sent and when. */
  function rawUpload(): {
    send: (msg: UploadImageRequest) => void;
    end: () => void;
    cancel: () => void;
    answer: Promise<Error | null>;
  } {
    const raw = rawImageService(v.t.pki, v.t.address);
    let call!: ReturnType<ImageServiceClient['uploadImage']>;
    const answer = new Promise<Error | null>((resolve) => {
      call = raw.uploadImage((err) => resolve(err));
    }).finally(() => raw.close());
    return {
      send: (msg) => call.write(msg),
      end: () => call.end(),
      cancel: () => call.cancel(),
      answer,
    };
  }

  it('flashes one new image onto two DUTs at once: one upload, and both flashes follow it', async () => {
    // What a pipeline does with a fresh build and two boards: two clients, the same new image.
    const shared = (await buildImage({ out: join(dir, 'shared.img'), version: '2.1.0', sizeBytes: 16 * MiB }))
      .path;
    const [a, b] = await Promise.all([
      v.t.client('operator').flash('vdut-a', shared),
      v.t.client('operator2').flash('vdut-b', shared),
    ]);
    assert.equal(a.imageSha256, b.imageSha256);
    assert.equal(a.uploaded + b.uploaded, 16 * MiB, 'the image went over the wire once');
    const duts = await v.t.client('operator').jig.duts();
    for (const dut of duts) {
      assert.equal(dut.storage?.dirty, false, dut.name);
      assert.equal(dut.storage?.lastImageSha256, a.imageSha256, dut.name);
    }
  });

  it('fails a flash that follows an upload whose bytes are not the image, and keeps the DUT dirty', async () => {
    const op = v.t.client('operator');
    const before = (await op.jig.duts())[0]!.storage?.lastImageSha256;
    const bytes = readFileSync(good);
    const claimed = createHash('sha256').update('some other image').digest('hex');
    const upload = rawUpload();
    upload.send({ start: { sha256: claimed, size: BigInt(bytes.length), name: 'claims-another.img' } });
    const started = await op.jig.flash('vdut-a', { imageSha256: claimed, verify: true, followUpload: true });
    for (let at = 0; at < bytes.length; at += MiB)
      upload.send({ data: { offset: BigInt(at), data: bytes.subarray(at, at + MiB) } });
    upload.end();
    assert.match((await upload.answer)?.message ?? '', /hash to [0-9a-f]{64}, not [0-9a-f]{64}/);
    const job = (await collect(op, started.jobId, { follow: true })).finished;
    assert.ok(
      job && !(job.state === JobState.JOB_STATE_EXITED && job.exitCode === 0),
      'the flash did not succeed',
    );
    const dut = (await op.jig.duts())[0]!;
    assert.equal(dut.storage?.dirty, true);
    assert.equal(dut.storage?.lastImageSha256, before);
    await op.flash('vdut-a', good);
  });

  it('stops a flash that follows an upload when the upload is abandoned, instead of waiting for bytes', async () => {
    const op = v.t.client('operator');
    const fresh = (await buildImage({ out: join(dir, 'fresh.img'), version: '2.0.9', sizeBytes: 16 * MiB }))
      .path;
    const bytes = readFileSync(fresh);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const upload = rawUpload();
    upload.send({ start: { sha256, size: BigInt(bytes.length), name: 'abandoned.img' } });
    upload.send({ data: { offset: 0n, data: bytes.subarray(0, 2 * MiB) } });
    const started = await op.jig.flash('vdut-a', { imageSha256: sha256, verify: true, followUpload: true });
    upload.cancel();
    await upload.answer;
    const job = (await collect(op, started.jobId, { follow: true })).finished;
    assert.equal(
      job?.state,
      JobState.JOB_STATE_STOPPED,
      `the flash was stopped, not left to time out: state ${job?.state}, exit ${job?.exitCode}, ${job?.stopReason}`,
    );
    assert.equal(job?.stopReason, 'error');
    assert.equal((await op.jig.duts())[0]!.storage?.dirty, true);
  });
});
