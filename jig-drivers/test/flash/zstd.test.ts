import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { type DecoderChoice, decompressStream } from '../../src/flash/decompress.js';
import { Xxh64, xxh64Hex } from '../../src/flash/xxhash64.js';
import { sha256 } from './helpers/test-images.js';

let decoder: DecoderChoice = 'builtin';

async function unzstd(file: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stream = decompressStream('zstd', createReadStream(file), path.basename(file), { decoder });
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

describe('flash zstd integrity', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-flash-zstd-'));
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Compresses `data` with the zstd CLI (which writes a content checksum) into `name`. */
  function zstdFile(name: string, data: Buffer): string {
    const raw = path.join(dir, name.replace(/\.zst$/, ''));
    writeFileSync(raw, data);
    execFileSync('zstd', ['-q', '-f', '-o', path.join(dir, name), raw]);
    return path.join(dir, name);
  }

  it('computes XXH64 as libzstd does, for every tail length and any slicing', () => {
    assert.equal(xxh64Hex(new Uint8Array(0)), 'ef46db3751d8e999'); // the spec's test vector
    for (const length of [1, 3, 4, 7, 8, 9, 31, 32, 33, 64, 100, 4099, 1 << 20]) {
      const data = randomBytes(length);
      const frame = readFileSync(zstdFile(`v${length}.zst`, data));
      const stored = frame.readUInt32LE(frame.length - 4); // the frame's content checksum
      assert.equal(new Xxh64().update(data).digestLow32(), stored, `length ${length}`);
      const sliced = new Xxh64();
      // Odd slices starting at odd offsets exercise the unaligned and pending-stripe paths.
      for (let at = 0; at < data.length; at += 13) sliced.update(data.subarray(at, at + 13));
      assert.equal(sliced.digestLow32(), stored, `length ${length}, sliced`);
    }
  });

  for (const choice of ['builtin', 'auto'] as const) {
    describe(choice === 'builtin' ? 'with the built-in decoder' : 'with the zstd tool', () => {
      before(() => {
        decoder = choice;
      });

      it('detects damage in stored blocks, which only the content checksum can see', async () => {
        // Random data does not compress: zstd stores it raw, so a flipped byte decodes "fine".
        const file = zstdFile('random.img.zst', randomBytes(2 << 20));
        const bytes = Buffer.from(readFileSync(file));
        bytes[bytes.length >> 1]! ^= 0x01;
        writeFileSync(file, bytes);
        await assert.rejects(unzstd(file), (err: unknown) => {
          assert.ok(err instanceof JigletError);
          assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
          assert.equal(err.message, 'random.img.zst is truncated or corrupt: zstd content checksum mismatch');
          return true;
        });
      });

      it('decodes several frames and skippable frames, checking each frame (pzstd, cat a.zst b.zst)', async () => {
        const first = randomBytes(300_000);
        const second = Buffer.concat([Buffer.alloc(500_000), randomBytes(1000)]);
        const skippable = Buffer.concat([
          Buffer.from([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]),
          Buffer.from('hello'),
        ]);
        const joined = path.join(dir, 'joined.img.zst');
        writeFileSync(
          joined,
          Buffer.concat([
            skippable,
            readFileSync(zstdFile('a.zst', first)),
            skippable,
            readFileSync(zstdFile('b.zst', second)),
          ]),
        );
        assert.equal(sha256(await unzstd(joined)), sha256(Buffer.concat([first, second])));
      });

      it('refuses a file cut anywhere, also right before the checksum or between frames', async () => {
        const frame = readFileSync(zstdFile('c.zst', randomBytes(400_000)));
        const whole = Buffer.concat([frame, frame]);
        for (const length of [5, 20, 131_000, frame.length - 4, frame.length - 1, frame.length + 3]) {
          const cut = path.join(dir, 'cut.img.zst');
          writeFileSync(cut, whole.subarray(0, length));
          await assert.rejects(
            unzstd(cut),
            /^JigletError: cut\.img\.zst is truncated or corrupt: /,
            `cut at ${length}`,
          );
        }
      });
    });
  }
});
