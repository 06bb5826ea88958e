/**
 * Test disk images: a deterministic mix of random, all-zero and almost-zero 4 KiB blocks, their
 * compressed forms (made with the real gzip/xz/zstd CLIs), and bmaps computed here the way
 * bmaptool would write them (bmaptool itself is not installed).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';

/** Block size of the test images and their bmaps. */
export const BLOCK = 4096;

/** Deterministic PRNG (mulberry32), so a failing image layout can be replayed. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A built image and what the tests need to know about it. */
export interface TestImage {
  /** Path of the raw image. */
  path: string;
  /** Its bytes. */
  data: Buffer;
  /** Indexes of its all-zero blocks. */
  zeroBlocks: number[];
}

/**
 * Writes a raw image of `blocks` 4 KiB blocks (plus `tailBytes` of a partial last block): runs of
 * zero blocks and random blocks, some random blocks with a single non-zero byte, zeros at the end.
 */
export function buildImage(file: string, blocks: number, seed = 1, tailBytes = 0): TestImage {
  const random = prng(seed);
  const data = Buffer.alloc(blocks * BLOCK + tailBytes);
  const zeroBlocks: number[] = [];
  let zero = false;
  for (let block = 0; block < blocks; block++) {
    if (random() < 0.05) zero = !zero; // runs, like free space in a filesystem
    const start = block * BLOCK;
    if (block >= blocks - 3 || zero) {
      zeroBlocks.push(block);
    } else if (random() < 0.1) {
      data[start + Math.floor(random() * BLOCK)] = 1 + Math.floor(random() * 255); // almost zero: must be written
    } else {
      randomBytes(BLOCK).copy(data, start);
    }
  }
  if (tailBytes > 0) randomBytes(tailBytes).copy(data, blocks * BLOCK);
  writeFileSync(file, data);
  return { path: file, data, zeroBlocks };
}

/** Compresses `file` with the CLI tool of `format` into `file` + extension, keeping `file`. */
export function compress(file: string, format: 'gzip' | 'xz' | 'zstd'): string {
  if (format === 'gzip') execFileSync('gzip', ['-k', '-f', '-1', file]);
  // -T2 makes a multi-block stream, as xz does for big images.
  if (format === 'xz') execFileSync('xz', ['-k', '-f', '-0', '-T2', file]);
  if (format === 'zstd') execFileSync('zstd', ['-q', '-k', '-f', '-1', file]);
  return `${file}${{ gzip: '.gz', xz: '.xz', zstd: '.zst' }[format]}`;
}

/** SHA-256 hex of `data`. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Inclusive block ranges of the blocks for which `mapped(block)` holds. */
export function blockRanges(blocks: number, mapped: (block: number) => boolean): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let block = 0; block < blocks; block++) {
    if (!mapped(block)) continue;
    const last = ranges.at(-1);
    if (last !== undefined && last[1] === block - 1) last[1] = block;
    else ranges.push([block, block]);
  }
  return ranges;
}

/** Options of `makeBmap`. */
export interface BmapOptions {
  /** Ranges to map; default: every block that is not all zero. */
  ranges?: Array<[number, number]>;
  /** Version attribute; default 2.0. */
  version?: string;
  /** Checksum algorithm; default sha256 (1.3 uses sha1 under its old names). */
  checksumType?: 'sha256' | 'sha1';
  /** ImageSize to claim; default the real size. */
  imageSize?: number;
  /** Replace one range's checksum with this. */
  corruptRange?: number;
}

/** A bmap for `data` in bmaptool's layout, with range checksums and the file checksum. */
export function makeBmap(data: Buffer, options: BmapOptions = {}): string {
  const blocks = Math.ceil(data.length / BLOCK);
  const type = options.checksumType ?? 'sha256';
  const version = options.version ?? '2.0';
  const legacy = version === '1.3';
  const ranges =
    options.ranges ??
    blockRanges(blocks, (b) => !data.subarray(b * BLOCK, (b + 1) * BLOCK).equals(Buffer.alloc(BLOCK)));
  const mapped = ranges.reduce((n, [first, last]) => n + last - first + 1, 0);
  const rangeLines = ranges.map(([first, last], i) => {
    let digest = createHash(type)
      .update(data.subarray(first * BLOCK, (last + 1) * BLOCK))
      .digest('hex');
    if (i === options.corruptRange) digest = digest.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const text = first === last ? `${first}` : `${first}-${last}`;
    return `        <Range ${legacy ? 'sha1' : 'chksum'}="${digest}"> ${text} </Range>`;
  });
  const digestLength = type === 'sha256' ? 64 : 40;
  const fileTag = legacy ? 'BmapFileSHA1' : 'BmapFileChecksum';
  const body = [
    '<?xml version="1.0" ?>',
    '<!-- This file contains the block map for an image file -->',
    `<bmap version="${version}">`,
    `    <ImageSize> ${options.imageSize ?? data.length} </ImageSize>`,
    `    <BlockSize> ${BLOCK} </BlockSize>`,
    `    <BlocksCount> ${Math.ceil((options.imageSize ?? data.length) / BLOCK)} </BlocksCount>`,
    `    <MappedBlocksCount> ${mapped} </MappedBlocksCount>`,
    ...(legacy ? [] : [`    <ChecksumType> ${type} </ChecksumType>`]),
    `    <${fileTag}> ${'0'.repeat(digestLength)} </${fileTag}>`,
    '    <BlockMap>',
    ...rangeLines,
    '    </BlockMap>',
    '</bmap>',
    '',
  ].join('\n');
  // bmaptool's rule: the file's digest with the digest field itself all zeros.
  const fileDigest = createHash(type).update(body).digest('hex');
  return body.replace('0'.repeat(digestLength), fileDigest);
}
