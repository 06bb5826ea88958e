/**
 * The client's memory of image hashes (hash-cache.ts): an unchanged file is not read again, any
 * change to it is noticed, a file still being written is not remembered, and a cache that cannot
 * be written only costs the hashing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedSha256 } from '../src/hash-cache.js';

describe('remembered image hashes', () => {
  let dir: string;
  let cachePath: string;
  let hashed: number;
  const hashOf = (file: string) => async (): Promise<string> => {
    hashed++;
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-hash-cache-'));
    cachePath = join(dir, 'cache', 'image-sha256.json');
    hashed = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads an unchanged file once, and again once it changed, even to the same size', async () => {
    const file = join(dir, 'os.img');
    writeFileSync(file, 'version 1');
    const settled = { cachePath, settledNs: 0n };
    const first = await cachedSha256(file, hashOf(file), settled);
    assert.equal(await cachedSha256(file, hashOf(file), settled), first);
    assert.equal(hashed, 1, 'the second call did not read the file');
    writeFileSync(file, 'version 2');
    const second = await cachedSha256(file, hashOf(file), settled);
    assert.notEqual(second, first);
    assert.equal(second, createHash('sha256').update('version 2').digest('hex'));
    assert.equal(hashed, 2);
  });

  it('does not remember a file that changed just before it was hashed (it may still be written)', async () => {
    const file = join(dir, 'growing.img');
    writeFileSync(file, 'part one');
    const fresh = { cachePath, settledNs: 60_000_000_000n };
    await cachedSha256(file, hashOf(file), fresh);
    await cachedSha256(file, hashOf(file), fresh);
    assert.equal(hashed, 2);
  });

  it('still answers when the cache cannot be written', async () => {
    const file = join(dir, 'os.img');
    writeFileSync(file, 'data');
    writeFileSync(join(dir, 'not-a-dir'), '');
    const broken = { cachePath: join(dir, 'not-a-dir', 'image-sha256.json'), settledNs: 0n };
    const sha = await cachedSha256(file, hashOf(file), broken);
    assert.equal(sha, createHash('sha256').update('data').digest('hex'));
    assert.equal(await cachedSha256(file, hashOf(file), broken), sha);
    assert.equal(hashed, 2);
  });

  it('hashes again when the remembered entry is damaged, and leaves no temporary files', async () => {
    const file = join(dir, 'os.img');
    writeFileSync(file, 'data');
    const settled = { cachePath, settledNs: 0n };
    const sha = await cachedSha256(file, hashOf(file), settled);
    const entries = JSON.parse(readFileSync(cachePath, 'utf8')) as Record<string, { sha256: unknown }>;
    for (const entry of Object.values(entries)) entry.sha256 = 'not a hash';
    writeFileSync(cachePath, JSON.stringify(entries));
    assert.equal(await cachedSha256(file, hashOf(file), settled), sha);
    assert.equal(hashed, 2);
    assert.deepEqual(readdirSync(join(dir, 'cache')), ['image-sha256.json']);
  });
});
