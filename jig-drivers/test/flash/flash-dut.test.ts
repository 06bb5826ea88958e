import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { driverEventLine, type FlashProgress, type StepEvent } from '../../../protocol/src/driver-events.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { type FlashDutOptions, type FlashSummary, flashDut } from '../../src/flash/flash-dut.js';
import { LoopDevice } from './helpers/loop-device.js';
import { RecordingMux } from './helpers/recording-mux.js';
import {
  BLOCK,
  blockRanges,
  buildImage,
  compress,
  makeBmap,
  sha256,
  type TestImage,
} from './helpers/test-images.js';

const MiB = 1024 * 1024;
const FILL = 0xaa; // what the "card" held before: skipped blocks must still hold it

/** The progress line format the agent parses. */
const progressLineSchema = z.strictObject({
  flash: z.strictObject({
    phase: z.enum(['host', 'wait-device', 'write', 'sync', 'verify', 'dut', 'done']),
    bytesWritten: z.number().int().nonnegative(),
    bytesRead: z.number().int().nonnegative(),
    totalBytes: z.number().int().nonnegative().nullable(),
    mbPerS: z.number().nonnegative(),
    etaS: z.number().int().nonnegative().nullable(),
  }),
});

/** One flash with everything it reported. */
interface Run {
  mux: RecordingMux;
  lines: string[];
  steps: StepEvent[];
  warnings: string[];
  result: Promise<FlashSummary>;
}

/** Expects a JigletError with `code` whose message matches `pattern`. */
function coded(code: string, pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof JigletError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

/** The phases of the progress lines, with repeats collapsed. */
function phases(lines: string[]): string[] {
  const seen = lines.map((line) => progressLineSchema.parse(JSON.parse(line)).flash.phase);
  return seen.filter((phase, i) => phase !== seen[i - 1]);
}

describe('flashDut onto a real loop device', () => {
  let dir: string;
  let image: TestImage;
  let loop: LoopDevice;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-dut-'));
    image = buildImage(path.join(dir, 'image.img'), 32 * 256, 11); // 32 MiB
  });

  beforeEach(() => {
    loop = new LoopDevice(path.join(dir, 'card.bin'), 40 * MiB, FILL);
  });

  afterEach(() => loop.destroy());

  after(() => rmSync(dir, { recursive: true, force: true }));

  function flash(overrides: Partial<FlashDutOptions> & { onVerify?: () => void } = {}): Run {
    const mux = new RecordingMux();
    const run: Omit<Run, 'result'> = { mux, lines: [], steps: [], warnings: [] };
    const result = flashDut({
      image: image.path,
      mux,
      resolveDevice: async () => loop.device,
      verify: true,
      onProgress: (progress: FlashProgress) => {
        run.lines.push(driverEventLine({ kind: 'flash', progress }));
        if (progress.phase === 'verify' && progress.bytesRead === 0) overrides.onVerify?.();
      },
      onStep: (step) => run.steps.push(step),
      onWarning: (warning) => run.warnings.push(warning),
      ...overrides,
    });
    return { ...run, result };
  }

  /**
   * Asserts the device holds the image's non-zero blocks and zeros where the image is zero: the
   * old FILL must not survive in a skipped block (the medium is zeroed before a skipping write).
   */
  function assertZeroSkippingFlash(summary: FlashSummary): void {
    const device = readFileSync(loop.device);
    const zero = new Set(image.zeroBlocks);
    const written: Buffer[] = [];
    for (let block = 0; block < image.data.length / BLOCK; block++) {
      const actual = device.subarray(block * BLOCK, (block + 1) * BLOCK);
      const expected = zero.has(block)
        ? Buffer.alloc(BLOCK, 0)
        : image.data.subarray(block * BLOCK, (block + 1) * BLOCK);
      assert.ok(actual.equals(expected), `block ${block} (${zero.has(block) ? 'zero, skipped' : 'data'})`);
      if (!zero.has(block)) written.push(actual);
    }
    assert.equal(summary.bytesSkipped, image.zeroBlocks.length * BLOCK);
    assert.equal(summary.bytesWritten, image.data.length - summary.bytesSkipped);
    assert.equal(summary.sha256, sha256(Buffer.concat(written)));
  }

  for (const format of ['raw', 'gzip', 'xz', 'zstd'] as const) {
    it(`flashes a ${format} image: writes the data, skips zero blocks, verifies, gives the medium back`, async () => {
      const file = format === 'raw' ? image.path : compress(image.path, format);
      const run = flash({ image: file });
      const summary = await run.result;
      assert.equal(summary.device, loop.device);
      assert.equal(summary.imageBytes, image.data.length);
      assert.equal(summary.verified, true);
      assertZeroSkippingFlash(summary);
      assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
      assert.deepEqual(phases(run.lines), ['host', 'wait-device', 'write', 'sync', 'verify', 'dut', 'done']);
      const last = progressLineSchema.parse(JSON.parse(run.lines.at(-1)!)).flash;
      assert.deepEqual(last, {
        phase: 'done',
        bytesWritten: summary.bytesWritten,
        bytesRead: image.data.length,
        totalBytes: image.data.length,
        mbPerS: 0,
        etaS: 0,
      });
      assert.deepEqual(
        run.steps.map((s) => s.action),
        [
          'inspect-image',
          'mux-to-host',
          'resolve-device',
          'check-device',
          'zero',
          'write',
          'sync',
          'verify',
          'mux-to-dut',
        ],
      );
      assert.ok(run.steps.every((s) => s.error === undefined && s.durationMs >= 0));
      assert.deepEqual(run.warnings, []);
    });
  }

  /**
   * Copies `source` into a new file in pieces, as an upload into the agent's cache writes it, and
   * resolves when all of it is there. The reader must wait for each piece.
   */
  async function arriveAt(target: string, source: Buffer, piece = 256 * 1024): Promise<void> {
    const fd = openSync(target, 'w');
    try {
      for (let at = 0; at < source.length; at += piece) {
        writeSync(fd, source, at, Math.min(piece, source.length - at), at);
        await new Promise((resolve) => setTimeout(resolve, 2)); // an upload's pace, not a sync
      }
    } finally {
      closeSync(fd);
    }
  }

  for (const format of ['gzip', 'xz'] as const) {
    it(`flashes a ${format} image that is still arriving: reads it as it grows, zeroes ahead, checks its SHA-256`, async () => {
      const compressed = readFileSync(compress(image.path, format));
      const growing = path.join(dir, `arriving-${format}`);
      writeFileSync(growing, compressed.subarray(0, 100)); // the upload has begun, no more
      const run = flash({
        image: growing,
        arriving: { size: compressed.length, sha256: sha256(compressed) },
      });
      await arriveAt(growing, compressed);
      const summary = await run.result;
      assert.equal(summary.imageBytes, image.data.length);
      assert.equal(summary.verified, true);
      assertZeroSkippingFlash(summary);
      assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
    });
  }

  it('fails with DATA_LOSS when the bytes that arrived are not the announced image, and gives the medium back', async () => {
    const compressed = readFileSync(compress(image.path, 'gzip'));
    const growing = path.join(dir, 'arriving-other');
    writeFileSync(growing, '');
    const run = flash({
      image: growing,
      arriving: { size: compressed.length, sha256: sha256(Buffer.from('another image')) },
    });
    await arriveAt(growing, compressed, 4 * MiB);
    await assert.rejects(
      run.result,
      coded('JIGLET_E_DATA_LOSS', /hashes to [0-9a-f]{64}, not [0-9a-f]{64}.*flash it again/),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
  });

  it('with a bmap writes exactly the mapped ranges, zeros inside them included', async () => {
    const blocks = image.data.length / BLOCK;
    const dataRanges = blockRanges(blocks, (b) => !image.zeroBlocks.includes(b));
    // Leave every other data range unmapped, and map the first run of zero blocks.
    const firstZero = image.zeroBlocks[0]!;
    const mapped = new Set<number>([firstZero]);
    dataRanges.forEach(([first, last], i) => {
      if (i % 2 === 0) for (let b = first; b <= last; b++) mapped.add(b);
    });
    const bmapFile = path.join(dir, 'image.bmap');
    writeFileSync(bmapFile, makeBmap(image.data, { ranges: blockRanges(blocks, (b) => mapped.has(b)) }));

    const summary = await flash({ image: compress(image.path, 'xz'), bmap: bmapFile }).result;
    const device = readFileSync(loop.device);
    for (let block = 0; block < blocks; block++) {
      const actual = device.subarray(block * BLOCK, (block + 1) * BLOCK);
      const expected = mapped.has(block)
        ? image.data.subarray(block * BLOCK, (block + 1) * BLOCK)
        : Buffer.alloc(BLOCK, FILL);
      assert.ok(actual.equals(expected), `block ${block} (${mapped.has(block) ? 'mapped' : 'unmapped'})`);
    }
    assert.ok(device.subarray(firstZero * BLOCK, (firstZero + 1) * BLOCK).equals(Buffer.alloc(BLOCK)));
    assert.equal(summary.bytesWritten, mapped.size * BLOCK);
    assert.equal(summary.bytesSkipped, image.data.length - mapped.size * BLOCK);
  });

  it('refuses a bmap whose range checksum does not match the image, and gives the medium back', async () => {
    const bmapFile = path.join(dir, 'wrong.bmap');
    writeFileSync(bmapFile, makeBmap(image.data, { corruptRange: 3 }));
    const run = flash({ bmap: bmapFile });
    await assert.rejects(
      run.result,
      coded('JIGLET_E_INVALID_ARGUMENT', /^bmap does not match the image: range \d+-\d+ sha256 differs$/),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
  });

  it('refuses a bmap made for an image of another size before touching the mux', async () => {
    const bmapFile = path.join(dir, 'other.bmap');
    writeFileSync(bmapFile, makeBmap(Buffer.concat([image.data, Buffer.alloc(BLOCK)])));
    const run = flash({ bmap: bmapFile });
    await assert.rejects(
      run.result,
      coded('JIGLET_E_INVALID_ARGUMENT', /^bmap does not match the image: the bmap describes/),
    );
    assert.deepEqual(run.mux.calls, []);
  });

  it('fails verification when the medium does not hold what was written, naming the range', async () => {
    const run = flash({
      onVerify: () => {
        // The "card" loses data after the write: change the loop device's backing file.
        const fd = openSync(loop.file, 'r+');
        writeSync(fd, Buffer.from('bitrot'), 0, 6, 20 * MiB + 100);
        closeSync(fd);
      },
    });
    await assert.rejects(
      run.result,
      coded('JIGLET_E_DRIVER_FAILED', new RegExp(`^verify failed: ${loop.device} bytes \\d+-\\d+ differ`)),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
    assert.equal(run.steps.find((s) => s.action === 'verify')?.error?.code, 'JIGLET_E_DRIVER_FAILED');
  });

  it("verifies a bmap flash against the bmap's range checksums (sha1 too), naming the range", async () => {
    const blocks = image.data.length / BLOCK;
    const zero = new Set(image.zeroBlocks);
    const ranges = blockRanges(blocks, (b) => !zero.has(b));
    const [first, last] = ranges[1]!;
    const bmapFile = path.join(dir, 'legacy.bmap');
    writeFileSync(bmapFile, makeBmap(image.data, { version: '1.3', checksumType: 'sha1' }));
    const run = flash({
      bmap: bmapFile,
      onVerify: () => {
        const fd = openSync(loop.file, 'r+');
        writeSync(fd, Buffer.from('bitrot'), 0, 6, last * BLOCK + 10);
        closeSync(fd);
      },
    });
    const bytes = `${first * BLOCK}-${(last + 1) * BLOCK - 1}`;
    await assert.rejects(
      run.result,
      coded('JIGLET_E_DRIVER_FAILED', new RegExp(`^verify failed: ${loop.device} bytes ${bytes} differ`)),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
  });

  it('refuses a truncated .xz before touching the mux', async () => {
    const xz = readFileSync(compress(image.path, 'xz'));
    const cut = path.join(dir, 'partial.img.xz');
    writeFileSync(cut, xz.subarray(0, xz.length >> 1));
    const run = flash({ image: cut });
    await assert.rejects(
      run.result,
      coded('JIGLET_E_INVALID_ARGUMENT', /^partial\.img\.xz is truncated or corrupt: /),
    );
    assert.deepEqual(run.mux.calls, []);
  });

  it('fails a truncated .gz clearly while writing and gives the medium back', async () => {
    const gz = readFileSync(compress(image.path, 'gzip'));
    const cut = path.join(dir, 'partial.img.gz');
    writeFileSync(cut, gz.subarray(0, gz.length >> 1));
    const run = flash({ image: cut });
    await assert.rejects(
      run.result,
      coded(
        'JIGLET_E_INVALID_ARGUMENT',
        /^partial\.img\.gz is truncated or corrupt: unexpected end of file$/,
      ),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
    assert.equal(phases(run.lines).at(-1), 'dut');
  });

  it('refuses an HTML page saved as the image before touching the mux', async () => {
    const page = path.join(dir, 'raspios.img.xz');
    writeFileSync(page, '<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n');
    const run = flash({ image: page });
    await assert.rejects(
      run.result,
      coded('JIGLET_E_INVALID_ARGUMENT', /^raspios\.img\.xz: not a disk image: looks like HTML$/),
    );
    assert.deepEqual(run.mux.calls, []);
  });

  it('refuses a mounted device and still switches the medium back to the DUT', async () => {
    loop.mountExt2(path.join(dir, 'mnt'));
    const run = flash();
    await assert.rejects(
      run.result,
      coded(
        'JIGLET_E_FAILED_PRECONDITION',
        new RegExp(`^refusing to flash ${loop.device}: it is mounted at `),
      ),
    );
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
    assert.ok(!run.steps.some((s) => s.action === 'write'));
  });

  it('refuses an image larger than the device before writing', async () => {
    loop.destroy();
    loop = new LoopDevice(path.join(dir, 'small.bin'), 16 * MiB, FILL);
    const run = flash();
    await assert.rejects(run.result, coded('JIGLET_E_FAILED_PRECONDITION', /does not fit on/));
    assert.ok(readFileSync(loop.device).equals(Buffer.alloc(16 * MiB, FILL)));
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
  });

  it('without verification warns loudly and says it did not verify', async () => {
    const run = flash({ verify: false });
    const summary = await run.result;
    assert.equal(summary.verified, false);
    assert.equal(run.warnings.length, 1);
    assert.match(run.warnings[0]!, /^WARNING: verification is OFF/);
    assert.ok(!phases(run.lines).includes('verify'));
  });

  it('stops when aborted mid-write and gives the medium back', async () => {
    const controller = new AbortController();
    const reason = new JigletError('JIGLET_E_UNAVAILABLE', 'stopped by SIGTERM');
    const run = flash({
      signal: controller.signal,
      onProgress: (progress) => {
        // Progress updates are throttled to 250 ms, longer than this whole write takes: abort one
        // event-loop turn into the write phase instead, while its buffers are going out.
        if (progress.phase === 'write') setImmediate(() => controller.abort(reason));
      },
    });
    await assert.rejects(run.result, (err: unknown) => err === reason);
    assert.deepEqual(run.mux.calls, ['toHost', 'toDut']);
  });

  it('reports a mux that fails to switch back together with the flash error', async () => {
    loop.mountExt2(path.join(dir, 'mnt2'));
    const run = flash();
    run.mux.failOn = 'toDut';
    await assert.rejects(
      run.result,
      coded(
        'JIGLET_E_FAILED_PRECONDITION',
        /is mounted at .*; switching the medium back to the DUT failed too: mux relay stuck$/,
      ),
    );
  });

  it('writes a regular file only when files are allowed', async () => {
    const disk = path.join(dir, 'vdut.img');
    writeFileSync(disk, '');
    const refusedRun = flash({ resolveDevice: async () => disk });
    await assert.rejects(refusedRun.result, coded('JIGLET_E_FAILED_PRECONDITION', /regular file/));
    const summary = await flash({ resolveDevice: async () => disk, allowFile: true }).result;
    assert.equal(summary.verified, true);
    assert.equal(sha256(readFileSync(disk)), sha256(image.data));
  });
});
