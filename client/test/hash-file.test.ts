/**
 * hashFile (image-client.ts) reads a file in turns of two buffers, one filling while the other is
 * hashed: the digest must be the file's SHA-256 at every size around the buffer's, and progress
 * must count every byte once, in order.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashFile, type TransferProgress } from '../src/image-client.js';

const MiB = 1024 * 1024;

describe('hashing an image file', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-hash-file-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const size of [0, 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 9 * MiB + 7]) {
    it(`gives the SHA-256 of a ${size}-byte file and reports progress up to its size`, async () => {
      const data = randomBytes(size);
      const file = join(dir, `image-${size}`);
      writeFileSync(file, data);
      const seen: TransferProgress[] = [];
      const sha256 = await hashFile(file, (p) => seen.push(p));
      assert.equal(sha256, createHash('sha256').update(data).digest('hex'));
      assert.deepEqual(
        seen.map((p) => p.done),
        [...seen.map((p) => p.done)].sort((a, b) => a - b),
        'progress only grows',
      );
      assert.equal(seen.at(-1)?.done ?? 0, size);
      assert.ok(seen.every((p) => p.phase === 'hash' && p.total === size));
    });
  }

  it('rejects for a file that is not there, naming it', async () => {
    await assert.rejects(hashFile(join(dir, 'missing.img')), /missing\.img/);
  });
});
