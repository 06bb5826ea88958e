import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { type DecoderChoice, decoderTool, decompressStream } from '../../src/flash/decompress.js';
import { detectFormat, type ImageFormat, inspectImage } from '../../src/flash/image-format.js';
import { imageSizeHint } from '../../src/flash/image-size.js';
import { buildImage, compress, sha256, type TestImage } from './helpers/test-images.js';

/** Decompresses `file` as `format` and returns the SHA-256 and size of the output. */
async function decompressFile(
  file: string,
  format: ImageFormat,
  decoder: DecoderChoice = 'auto',
): Promise<{ sha256: string; bytes: number }> {
  const chunks: Buffer[] = [];
  const stream = decompressStream(format, createReadStream(file), path.basename(file), { decoder });
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
  }
  const data = Buffer.concat(chunks);
  return { sha256: sha256(data), bytes: data.length };
}

/** Expects `promise` to reject with JIGLET_E_INVALID_ARGUMENT whose message matches `pattern`. */
async function rejectsInvalid(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof JigletError, `expected a JigletError, got ${String(err)}`);
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(err.message, pattern);
    return true;
  });
}

describe('flash image formats', () => {
  let dir: string;
  let image: TestImage;
  const compressed: Partial<Record<ImageFormat, string>> = {};

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-format-'));
    image = buildImage(path.join(dir, 'image.img'), 4096, 7, 1000); // 16 MiB and a partial block
    compressed.gzip = compress(image.path, 'gzip');
    compressed.xz = compress(image.path, 'xz');
    compressed.zstd = compress(image.path, 'zstd');
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('detects the format from magic bytes, not the file name', async () => {
    assert.equal(detectFormat(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
    assert.equal(detectFormat(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0])), 'xz');
    assert.equal(detectFormat(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
    assert.equal(detectFormat(Buffer.alloc(512)), 'raw');
    const misnamed = path.join(dir, 'really-gzip.img');
    writeFileSync(misnamed, readFileSync(compressed.gzip!));
    assert.equal((await inspectImage(misnamed)).format, 'gzip');
    assert.equal((await inspectImage(compressed.xz!)).format, 'xz');
    assert.equal((await inspectImage(image.path)).format, 'raw');
  });

  for (const [name, content, reason] of [
    [
      'page.img.xz',
      '\xef\xbb\xbf\n  <!DOCTYPE html><html><body>404 Not Found</body></html>',
      /looks like HTML/,
    ],
    ['page2.img', '<html><head><title>Error</title></head></html>', /looks like HTML/],
    ['image.zip', 'PK\x03\x04\x14\x00\x00\x00\x08\x00', /zip archive/],
    ['tool.img', '\x7fELF\x02\x01\x01\x00', /ELF executable/],
    ['empty.img', '', /is empty/],
    ['notes.img', `${'this is a readme, not a disk\n'.repeat(40)}`, /text file/],
    ['tiny.img', '\x00\x01\x02', /only 3 bytes/],
  ] as const) {
    it(`refuses ${name}: not a disk image`, async () => {
      const file = path.join(dir, name);
      writeFileSync(file, Buffer.from(content, 'latin1'));
      await rejectsInvalid(inspectImage(file), new RegExp(`${name}: not a disk image: .*${reason.source}`));
    });
  }

  for (const [format, decoder] of [
    ['gzip', 'auto'],
    ['xz', 'auto'],
    ['zstd', 'auto'],
    ['gzip', 'builtin'],
    ['xz', 'builtin'],
    ['zstd', 'builtin'],
  ] as const) {
    const how = decoder === 'auto' ? 'with the installed tool' : 'with the built-in decoder';
    it(`streams ${format} back to the exact image ${how}`, async () => {
      const out = await decompressFile(compressed[format]!, format, decoder);
      assert.equal(out.bytes, image.data.length);
      assert.equal(out.sha256, sha256(image.data));
    });

    it(`rejects a truncated ${format} file clearly ${how}`, async () => {
      const whole = readFileSync(compressed[format]!);
      const cut = path.join(dir, `cut-${path.basename(compressed[format]!)}`);
      writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.6)));
      await rejectsInvalid(
        decompressFile(cut, format, decoder),
        /^cut-image\.img\.(gz|xz|zst) is truncated or corrupt: .+/,
      );
    });

    it(`rejects a corrupted ${format} file ${how}`, async () => {
      const bytes = Buffer.from(readFileSync(compressed[format]!));
      // Damage the middle of the data: past every header, before every trailer.
      for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i * 97]! ^= 0x5a;
      const damaged = path.join(dir, `damaged-${path.basename(compressed[format]!)}`);
      writeFileSync(damaged, bytes);
      await rejectsInvalid(decompressFile(damaged, format, decoder), /is truncated or corrupt/);
    });
  }

  it("decodes with Debian's tools where installed, and in-process where not", () => {
    assert.match(decoderTool('xz')?.path ?? '', /\/xz$/);
    assert.deepEqual(decoderTool('xz')?.args, ['-dc', '-T0']);
    assert.match(decoderTool('zstd')?.path ?? '', /\/zstd$/);
    assert.equal(decoderTool('xz', 'builtin'), null);
    assert.equal(decoderTool('raw'), null);
    const saved = process.env.PATH;
    process.env.PATH = dir; // holds no decoder
    try {
      assert.equal(decoderTool('xz'), null);
      assert.equal(decoderTool('gzip'), null);
    } finally {
      process.env.PATH = saved;
    }
  });

  it('still decompresses xz after failed and abandoned xz streams (its process-wide lock is released)', async () => {
    const whole = readFileSync(compressed.xz!);
    const cut = path.join(dir, 'short.img.xz');
    writeFileSync(cut, whole.subarray(0, 100_000));
    await rejectsInvalid(decompressFile(cut, 'xz', 'builtin'), /truncated or corrupt/);
    // Abandon one mid-stream, as a failed write does.
    const stream = decompressStream('xz', createReadStream(compressed.xz!), 'image.img.xz', {
      decoder: 'builtin',
    });
    for await (const _ of stream) break;
    const out = await decompressFile(compressed.xz!, 'xz', 'builtin');
    assert.equal(out.sha256, sha256(image.data));
  });

  for (const decoder of ['auto', 'builtin'] as const) {
    it(`passes read errors of the image file through instead of calling the image corrupt (${decoder})`, async () => {
      const missing = path.join(dir, 'missing.img.gz');
      await assert.rejects(decompressFile(missing, 'gzip', decoder), (err: unknown) => {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOENT');
        return true;
      });
    });
  }

  it('stops the decoding tool when the reader abandons the stream', async () => {
    const stream = decompressStream('xz', createReadStream(compressed.xz!), 'image.img.xz');
    for await (const _ of stream) break;
    const out = await decompressFile(compressed.xz!, 'xz');
    assert.equal(out.sha256, sha256(image.data));
  });

  it('knows the decompressed size from the file: raw size, xz index, zstd frame, gzip ISIZE', async () => {
    const size = image.data.length;
    assert.deepEqual(await imageSizeHint(await inspectImage(image.path)), { bytes: size, exact: true });
    assert.deepEqual(await imageSizeHint(await inspectImage(compressed.xz!)), { bytes: size, exact: true });
    assert.deepEqual(await imageSizeHint(await inspectImage(compressed.zstd!)), {
      bytes: size,
      exact: false,
    });
    assert.deepEqual(await imageSizeHint(await inspectImage(compressed.gzip!)), {
      bytes: size,
      exact: false,
    });
  });

  it('refuses a truncated .xz before decompressing: its footer is missing', async () => {
    const whole = readFileSync(compressed.xz!);
    const cut = path.join(dir, 'download.img.xz');
    writeFileSync(cut, whole.subarray(0, whole.length - 5000));
    await rejectsInvalid(
      inspectImage(cut).then(imageSizeHint),
      /^download\.img\.xz is truncated or corrupt: no xz stream footer/,
    );
  });

  it('refuses a multi-stream .xz, which the decoder would silently cut short', async () => {
    const whole = readFileSync(compressed.xz!);
    const twice = path.join(dir, 'twice.img.xz');
    writeFileSync(twice, Buffer.concat([whole, whole]));
    await rejectsInvalid(inspectImage(twice).then(imageSizeHint), /holds several xz streams/);
  });
});
