import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { JigletError } from '../../../protocol/src/errors.js';
import { BmapChecker, mappedBytes, parseBmap } from '../../src/flash/bmap.js';
import { bmapPlan } from '../../src/flash/write-plan.js';
import { BLOCK, makeBmap } from './helpers/test-images.js';

/** 10 blocks and a 100-byte partial 11th: blocks 0-2 and 5 and 10 hold data. */
function sampleImage(): Buffer {
  const data = Buffer.alloc(10 * BLOCK + 100);
  for (const block of [0, 1, 2, 5]) randomBytes(BLOCK).copy(data, block * BLOCK);
  randomBytes(100).copy(data, 10 * BLOCK);
  return data;
}

function invalid(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof JigletError, String(err));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(err.message, pattern);
    return true;
  };
}

/** Feeds `data` to a checker in `piece`-byte chunks, then finishes. */
function check(bmapText: string, data: Buffer, piece: number): void {
  const checker = new BmapChecker(parseBmap(bmapText, 'image.bmap'));
  for (let at = 0; at < data.length; at += piece) checker.update(at, data.subarray(at, at + piece));
  checker.finish(data.length);
}

describe('flash bmap', () => {
  const data = sampleImage();

  it('parses a bmaptool 2.0 file: sizes, ranges (single blocks too) and checksums', () => {
    const bmap = parseBmap(makeBmap(data), 'image.bmap');
    assert.equal(bmap.version, '2.0');
    assert.equal(bmap.imageSize, data.length);
    assert.equal(bmap.blockSize, BLOCK);
    assert.equal(bmap.checksumType, 'sha256');
    assert.deepEqual(
      bmap.ranges.map(({ first, last }) => [first, last]),
      [
        [0, 2],
        [5, 5],
        [10, 10],
      ],
    );
    assert.equal(bmap.mappedBlocksCount, 5);
    assert.equal(mappedBytes(bmap), 4 * BLOCK + 100); // the last block is partial
  });

  it('accepts format 1.3 with SHA-1 under its old names', () => {
    const bmap = parseBmap(makeBmap(data, { version: '1.3', checksumType: 'sha1' }), 'old.bmap');
    assert.equal(bmap.checksumType, 'sha1');
    check(makeBmap(data, { version: '1.3', checksumType: 'sha1' }), data, 5000);
  });

  it('refuses what it cannot trust or does not understand', () => {
    const good = makeBmap(data);
    assert.throws(
      () => parseBmap('<bmap version="2.0"><ImageSize>', 'x.bmap'),
      invalid(/^bmap x\.bmap: not valid XML/),
    );
    assert.throws(() => parseBmap('<html></html>', 'x.bmap'), invalid(/not a bmap/));
    assert.throws(
      () => parseBmap(good.replace('version="2.0"', 'version="3.0"'), 'x.bmap'),
      invalid(/newer/),
    );
    assert.throws(
      () => parseBmap(good.replace('version="2.0"', 'version="1.2"'), 'x.bmap'),
      invalid(/has no checksums/),
    );
    // Any edit breaks the file's own checksum.
    assert.throws(() => parseBmap(good.replace('> 5 <', '> 6 <'), 'x.bmap'), invalid(/own sha256 checksum/));
    const md5 = makeBmap(data).replace(
      '<ChecksumType> sha256 </ChecksumType>',
      '<ChecksumType> md5 </ChecksumType>',
    );
    assert.throws(() => parseBmap(md5, 'x.bmap'), invalid(/checksum type "md5" is not supported/));
    assert.throws(
      () => parseBmap(makeBmap(data, { ranges: [[0, 20]] }), 'x.bmap'),
      invalid(/range 0-20 is out of order or outside the 11 blocks/),
    );
  });

  it('accepts image data that matches, however it is chunked', () => {
    for (const piece of [1, 999, BLOCK, 3 * BLOCK + 7, data.length]) check(makeBmap(data), data, piece);
  });

  it('names the first range whose checksum differs', () => {
    assert.throws(
      () => check(makeBmap(data, { corruptRange: 1 }), data, 4 * 1024 * 1024),
      invalid(/^bmap does not match the image: range 5-5 sha256 differs$/),
    );
    const other = Buffer.from(data);
    other[BLOCK + 17]! ^= 0xff;
    assert.throws(() => check(makeBmap(data), other, 7000), invalid(/range 0-2 sha256 differs/));
  });

  it('refuses an image whose size differs from the bmap', () => {
    assert.throws(
      () => check(makeBmap(data), data.subarray(0, data.length - 100), 7000),
      invalid(/^bmap does not match the image: /),
    );
    const longer = Buffer.concat([data, Buffer.alloc(5000)]);
    assert.throws(() => check(makeBmap(data), longer, 7000), invalid(/image is larger than the \d+ bytes/));
  });

  it('plans writes of exactly the mapped bytes, across buffer boundaries', () => {
    const bmap = parseBmap(makeBmap(data), 'image.bmap');
    const plan = bmapPlan(bmap);
    const piece = 2 * BLOCK + 10;
    const written: Array<[number, number]> = [];
    for (let at = 0; at < data.length; at += piece) {
      for (const [start, end] of plan.spans(at, data.subarray(at, at + piece))) {
        const last = written.at(-1);
        if (last?.[1] === at + start)
          last[1] = at + end; // touching across a buffer boundary
        else written.push([at + start, at + end]);
      }
    }
    assert.deepEqual(written, [
      [0, 3 * BLOCK],
      [5 * BLOCK, 6 * BLOCK],
      [10 * BLOCK, data.length],
    ]);
  });
});
