import assert from 'node:assert/strict';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import {
  finishTarget,
  openTarget,
  WRITE_BUFFER_BYTES,
  type WriteResult,
  type WriteTarget,
  writeImage,
} from '../../src/flash/block-writer.js';
import { verifyWritten } from '../../src/flash/verify.js';
import { writeAllPlan, zeroSkipPlan } from '../../src/flash/write-plan.js';
import { type ZeroedExtent, zeroTarget } from '../../src/flash/zero-target.js';
import { LoopDevice } from './helpers/loop-device.js';
import { BLOCK, buildImage, sha256, type TestImage } from './helpers/test-images.js';

const MiB = 1024 * 1024;

/**
 * A target taken as all zeros already, so that the writer's own skipping shows on a device
 * pre-filled with 0xaa (the flasher zeroes the target first, zero-target.ts).
 */
const ZEROED_ALREADY: ZeroedExtent = { bytes: Number.POSITIVE_INFINITY, extend: async () => {} };

/** Yields `data` in `piece`-byte chunks, counting how many the consumer has pulled. */
function chunked(data: Buffer, piece: number): AsyncGenerator<Buffer> & { pulled: () => number } {
  let pulled = 0;
  const generator = (async function* () {
    for (let at = 0; at < data.length; at += piece) {
      pulled++;
      yield data.subarray(at, at + piece);
    }
  })();
  return Object.assign(generator, { pulled: () => pulled });
}

/** Writes `image` to `target` through a fresh handle, synced and closed. */
async function writeTo(
  target: WriteTarget,
  image: Buffer,
  options: { skipZeros?: boolean; zeroed?: ZeroedExtent; signal?: AbortSignal } = {},
): Promise<WriteResult> {
  const handle = await openTarget(target);
  try {
    const result = await writeImage({
      source: chunked(image, 1 * MiB),
      handle,
      targetPath: target.path,
      plan: options.skipZeros === false ? writeAllPlan() : zeroSkipPlan(options.zeroed ?? ZEROED_ALREADY),
      signal: options.signal,
    });
    await finishTarget(handle, target, result.imageBytes);
    return result;
  } finally {
    await handle.close();
  }
}

describe('flash block writer and verify', () => {
  let dir: string;
  let image: TestImage;
  const loops: LoopDevice[] = [];

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-writer-'));
    image = buildImage(path.join(dir, 'image.img'), 24 * 256, 3); // 24 MiB
  });

  afterEach(() => {
    for (const loop of loops.splice(0)) loop.destroy();
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  function loopDevice(bytes: number): LoopDevice {
    const loop = new LoopDevice(path.join(dir, `backing-${loops.length}.bin`), bytes);
    loops.push(loop);
    return loop;
  }

  it('writes every non-zero block to a real block device and skips the zero ones', async () => {
    const loop = loopDevice(32 * MiB); // pre-filled with 0xaa: skipped blocks keep it
    const result = await writeTo({ path: loop.device, kind: 'block' }, image.data);

    assert.equal(result.imageBytes, image.data.length);
    assert.equal(result.bytesSkipped, image.zeroBlocks.length * BLOCK);
    assert.equal(result.bytesWritten + result.bytesSkipped, image.data.length);
    const device = readFileSync(loop.device);
    const zero = new Set(image.zeroBlocks);
    const written: Buffer[] = [];
    for (let block = 0; block < image.data.length / BLOCK; block++) {
      const onDevice = device.subarray(block * BLOCK, (block + 1) * BLOCK);
      if (zero.has(block)) {
        assert.ok(onDevice.equals(Buffer.alloc(BLOCK, 0xaa)), `zero block ${block} was written`);
      } else {
        assert.ok(onDevice.equals(image.data.subarray(block * BLOCK, (block + 1) * BLOCK)), `block ${block}`);
        written.push(onDevice);
      }
    }
    assert.equal(result.sha256, sha256(Buffer.concat(written)));
    assert.equal(
      result.ranges.reduce((sum, range) => sum + range.length, 0),
      result.bytesWritten,
    );
    await verifyWritten({ path: loop.device, kind: 'block' }, result);
  });

  it('skips zero blocks only where the target was zeroed, zeroing ahead of the writer', async () => {
    // An image whose size was not known up front: nothing zeroed at the start, then extend() is
    // asked before each buffer. The device ends where zeroing must stop (the 0xaa past 16 MiB of
    // a 20 MiB device would otherwise survive in skipped blocks).
    const loop = loopDevice(20 * MiB);
    const zeroed = await zeroTarget(loop.device, 0, { deviceBytes: 16 * MiB });
    assert.equal(zeroed.bytes, 0);
    const head = image.data.subarray(0, 20 * MiB);
    const result = await writeTo({ path: loop.device, kind: 'block' }, head, { zeroed });
    assert.equal(zeroed.bytes, 16 * MiB, 'zeroed up to the end it was given, no further');
    assert.ok(
      readFileSync(loop.device).equals(head),
      'every block reads back as the image, zero ones included',
    );
    const zerosPast = image.zeroBlocks.filter((b) => b * BLOCK >= 16 * MiB && b * BLOCK < head.length).length;
    assert.ok(zerosPast > 0, 'the image has zero blocks past the zeroed extent');
    const zerosBefore = image.zeroBlocks.filter((b) => b * BLOCK < 16 * MiB).length;
    assert.equal(result.bytesSkipped, zerosBefore * BLOCK, 'zero blocks past the zeroed extent are written');
    await verifyWritten({ path: loop.device, kind: 'block' }, result);
  });

  it('fills one buffer while the other is written, and pulls no further ahead (backpressure)', async () => {
    const file = path.join(dir, 'target.bin');
    writeFileSync(file, '');
    const source = chunked(image.data, 1 * MiB);
    const handle = await openTarget({ path: file, kind: 'file' });
    const ahead: number[] = [];
    try {
      await writeImage({
        source,
        handle,
        targetPath: file,
        plan: writeAllPlan(),
        // MiB pulled from the source beyond what is already on the medium.
        onProgress: ({ bytesRead }) => ahead.push(source.pulled() - bytesRead / MiB),
      });
    } finally {
      await handle.close();
    }
    const perBuffer = WRITE_BUFFER_BYTES / MiB;
    assert.equal(ahead.length, Math.ceil(image.data.length / WRITE_BUFFER_BYTES), 'one report per buffer');
    // While buffer N is reported done, buffer N+1 is full (about to be written): one buffer ahead.
    assert.deepEqual(
      ahead.slice(0, -2),
      ahead.slice(0, -2).map(() => perBuffer),
    );
    assert.ok(Math.max(...ahead) <= perBuffer, `never more than one buffer ahead: ${ahead}`);
  });

  it('extends a regular-file target to the image size when trailing zero blocks were skipped', async () => {
    const file = path.join(dir, 'disk.img');
    writeFileSync(file, '');
    const result = await writeTo({ path: file, kind: 'file' }, image.data);
    assert.ok(result.bytesSkipped >= 3 * BLOCK); // the image ends with zero blocks
    assert.equal(statSync(file).size, image.data.length);
    assert.equal(sha256(readFileSync(file)), sha256(image.data)); // holes read as zeros
  });

  it('detects data that changed on the medium after writing and names the range', async () => {
    const loop = loopDevice(32 * MiB);
    const target: WriteTarget = { path: loop.device, kind: 'block' };
    // Another opener (as udev's probe after a write) keeps the device's page cache alive past our
    // close; only blockdev --flushbufs then makes the read-back go to the medium.
    const bystander = openSync(loop.device, 'r');
    try {
      const result = await writeTo(target, image.data);
      assert.ok(result.ranges.length > 3);
      const range = result.ranges[2]!;
      // Change the medium underneath the page cache: write the backing file directly. Only a read
      // that really goes to the "medium" (the cache dropped by blockdev --flushbufs) can see it.
      const fd = openSync(loop.file, 'r+');
      writeSync(fd, Buffer.from('garbage'), 0, 7, range.offset + Math.floor(range.length / 2));
      closeSync(fd);
      const warnings: string[] = [];
      await assert.rejects(
        verifyWritten(target, result, { onWarning: (w) => warnings.push(w) }),
        (err: unknown) => {
          assert.ok(err instanceof JigletError);
          assert.equal(err.code, 'JIGLET_E_DRIVER_FAILED');
          const last = range.offset + range.length - 1;
          assert.match(
            err.message,
            new RegExp(`^verify failed: ${loop.device} bytes ${range.offset}-${last} differ`),
          );
          return true;
        },
      );
      assert.deepEqual(warnings, []);
    } finally {
      closeSync(bystander);
    }
  });

  it('refuses to run past the end of the device', async () => {
    const loop = loopDevice(8 * MiB);
    await assert.rejects(writeTo({ path: loop.device, kind: 'block' }, image.data), (err: unknown) => {
      assert.ok(err instanceof JigletError);
      assert.equal(err.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(err.message, new RegExp(`^the image does not fit: ${loop.device} ends before offset`));
      return true;
    });
  });

  it('stops between buffers when aborted', async () => {
    const file = path.join(dir, 'aborted.img');
    writeFileSync(file, '');
    const controller = new AbortController();
    const handle: FileHandle = await openTarget({ path: file, kind: 'file' });
    const stop = new Error('stop');
    try {
      await assert.rejects(
        writeImage({
          source: chunked(image.data, 1 * MiB),
          handle,
          targetPath: file,
          plan: writeAllPlan(),
          onProgress: ({ bytesRead }) => {
            if (bytesRead >= 2 * WRITE_BUFFER_BYTES) controller.abort(stop);
          },
          signal: controller.signal,
        }),
        (err: unknown) => err === stop,
      );
    } finally {
      await handle.close();
    }
    assert.equal(statSync(file).size, 2 * WRITE_BUFFER_BYTES); // partial writes stay, nothing after
  });
});
