/**
 * bmaptool's block map (`.bmap`, format 1.3–2.x): which blocks of a sparse image hold data, with a
 * checksum per range. Only mapped ranges are written; every range's checksum is checked against
 * the image data as it streams past, so a bmap made for another image is an error naming the
 * first range that differs instead of a card with half of two images on it.
 */
import { createHash, type Hash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { z } from 'zod';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { WrittenRange } from './written-ranges.js';

/** A checksum algorithm bmap files use and node:crypto provides. */
export type BmapChecksumType = 'sha256' | 'sha1';

/** One mapped range of blocks, inclusive, with the checksum of its bytes. */
export interface BmapRange {
  /** First block number. */
  first: number;
  /** Last block number (inclusive). */
  last: number;
  /** Hex checksum of the range's bytes (the last block may be partial). */
  checksum: string;
}

/** A parsed, self-consistent bmap. */
export interface Bmap {
  /** Format version, e.g. "2.0". */
  version: string;
  /** Size of the decompressed image in bytes. */
  imageSize: number;
  /** Block size in bytes (bmaptool uses 4096). */
  blockSize: number;
  /** Number of mapped blocks. */
  mappedBlocksCount: number;
  /** The range checksum algorithm. */
  checksumType: BmapChecksumType;
  /** Mapped ranges, ascending, not overlapping. */
  ranges: BmapRange[];
}

const decimal = z
  .string()
  .trim()
  .regex(/^\d+$/, { error: 'expected a whole number' })
  .transform((text) => Number(text));
const rangeSchema = z.union([
  z.string(),
  z.object({ '#text': z.string(), '@_chksum': z.string().optional(), '@_sha1': z.string().optional() }),
]);
const bmapSchema = z.object({
  '@_version': z.string().regex(/^\d+\.\d+$/, { error: 'expected a version such as "2.0"' }),
  ImageSize: decimal,
  BlockSize: decimal.refine((n) => n > 0, { error: 'must be positive' }),
  BlocksCount: decimal,
  MappedBlocksCount: decimal,
  ChecksumType: z.string().trim().optional(),
  BmapFileChecksum: z.string().trim().optional(),
  BmapFileSHA1: z.string().trim().optional(),
  BlockMap: z.union([z.literal(''), z.object({ Range: z.array(rangeSchema) })]),
});

/** Newest bmap major version understood (bmaptool's SUPPORTED_BMAP_VERSION). */
const SUPPORTED_MAJOR = 2;

/**
 * bmaptool's file checksum: the digest of the file with the digest's own text replaced by zeros.
 * Catches a bmap that was edited or damaged.
 */
function checkFileChecksum(
  text: string,
  expected: string,
  type: BmapChecksumType,
  fail: (m: string) => never,
) {
  const at = text.indexOf(expected);
  const zeroed = `${text.slice(0, at)}${'0'.repeat(expected.length)}${text.slice(at + expected.length)}`;
  const actual = createHash(type).update(zeroed).digest('hex');
  if (actual !== expected.toLowerCase()) fail(`its own ${type} checksum does not match (edited or damaged?)`);
}

/** Parses one range text ("0-1023" or "7") into [first, last]. */
function parseRangeText(text: string, fail: (m: string) => never): [number, number] {
  const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(text);
  if (!match) fail(`bad range "${text.trim()}"`);
  const first = Number(match[1]);
  return [first, match[2] === undefined ? first : Number(match[2])];
}

/**
 * Parses and checks bmap XML. `name` names the file in messages. Throws JIGLET_E_INVALID_ARGUMENT
 * for bad XML, an unsupported version or checksum, and ranges that contradict the header.
 */
export function parseBmap(text: string, name: string): Bmap {
  const fail: (message: string) => never = (message) => {
    throw invalidArgument(`bmap ${name}: ${message}`);
  };
  let doc: unknown;
  try {
    const parser = new XMLParser({
      ignoreAttributes: false,
      parseTagValue: false,
      isArray: (tag) => tag === 'Range',
    });
    doc = parser.parse(text, true);
  } catch (err) {
    fail(`not valid XML: ${(err as Error).message}`);
  }
  const parsed = bmapSchema.safeParse((doc as { bmap?: unknown } | undefined)?.bmap);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(`not a bmap: ${issue?.path.join('.') || '<bmap>'}: ${issue?.message}`);
  }
  const raw = parsed.data;
  const [major = 0, minor = 0] = raw['@_version'].split('.').map(Number);
  if (major > SUPPORTED_MAJOR) fail(`format version ${raw['@_version']} is newer than this flasher knows`);
  // Format 1.0–1.2 had no checksums; 1.3 had SHA-1 under other names; 1.4 is 2.0 (bmaptool history).
  if (major < 1 || (major === 1 && minor < 3)) {
    fail(`format version ${raw['@_version']} has no checksums; regenerate it with bmaptool create`);
  }
  const legacy = major === 1 && minor === 3;
  const checksumType = legacy ? 'sha1' : raw.ChecksumType;
  if (checksumType !== 'sha256' && checksumType !== 'sha1') {
    fail(`checksum type "${checksumType ?? '(none)'}" is not supported (sha256 or sha1)`);
  }
  const fileChecksum = legacy ? raw.BmapFileSHA1 : raw.BmapFileChecksum;
  if (fileChecksum === undefined) fail('it has no file checksum');
  checkFileChecksum(text, fileChecksum, checksumType, fail);

  const blocks = Math.ceil(raw.ImageSize / raw.BlockSize);
  if (raw.BlocksCount !== blocks) {
    fail(
      `BlocksCount ${raw.BlocksCount} does not fit ImageSize ${raw.ImageSize} / BlockSize ${raw.BlockSize}`,
    );
  }
  const ranges: BmapRange[] = [];
  let mapped = 0;
  for (const entry of raw.BlockMap === '' ? [] : raw.BlockMap.Range) {
    const rangeText = typeof entry === 'string' ? entry : entry['#text'];
    const checksum = typeof entry === 'string' ? undefined : legacy ? entry['@_sha1'] : entry['@_chksum'];
    const [first, last] = parseRangeText(rangeText, fail);
    if (checksum === undefined) fail(`range ${first}-${last} has no checksum`);
    const previous = ranges.at(-1);
    if (last < first || last >= blocks || (previous !== undefined && first <= previous.last)) {
      fail(`range ${first}-${last} is out of order or outside the ${blocks} blocks of the image`);
    }
    ranges.push({ first, last, checksum: checksum.trim().toLowerCase() });
    mapped += last - first + 1;
  }
  if (mapped !== raw.MappedBlocksCount) {
    fail(`MappedBlocksCount is ${raw.MappedBlocksCount} but the ranges map ${mapped} blocks`);
  }
  return {
    version: raw['@_version'],
    imageSize: raw.ImageSize,
    blockSize: raw.BlockSize,
    mappedBlocksCount: mapped,
    checksumType,
    ranges,
  };
}

/** Reads and parses a bmap file (see `parseBmap`). */
export async function readBmap(bmapPath: string): Promise<Bmap> {
  let text: string;
  try {
    text = await readFile(bmapPath, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read bmap ${bmapPath}: ${(err as Error).message}`);
  }
  return parseBmap(text, path.basename(bmapPath));
}

/** The byte span [start, end) of a range in an image of the bmap's size. */
export function rangeBytes(bmap: Bmap, range: BmapRange): [number, number] {
  return [range.first * bmap.blockSize, Math.min((range.last + 1) * bmap.blockSize, bmap.imageSize)];
}

/** Bytes the bmap maps (what a bmap flash writes). */
export function mappedBytes(bmap: Bmap): number {
  return bmap.ranges.reduce((sum, range) => {
    const [start, end] = rangeBytes(bmap, range);
    return sum + end - start;
  }, 0);
}

/**
 * The bmap's ranges as written ranges: where a bmap flash writes, with the checksums that
 * `BmapChecker` has held the image data to once the flash got through the whole image.
 */
export function bmapWrittenRanges(bmap: Bmap): WrittenRange[] {
  return bmap.ranges.map((range) => {
    const [start, end] = rangeBytes(bmap, range);
    return { offset: start, length: end - start, algorithm: bmap.checksumType, digest: range.checksum };
  });
}

function mismatch(detail: string): never {
  throw invalidArgument(`bmap does not match the image: ${detail}`);
}

/**
 * Checks the image against the bmap while it streams: feed every decompressed chunk in order,
 * then `finish`. Throws JIGLET_E_INVALID_ARGUMENT "bmap does not match the image: range 100-199
 * sha256 differs" as soon as a range is complete and wrong, or when the sizes differ.
 */
export class BmapChecker {
  private next = 0;
  private hash: Hash | undefined;

  /** Checks against `bmap`. */
  constructor(private readonly bmap: Bmap) {}

  /** Feeds `data`, the image bytes starting at image offset `offset`. */
  update(offset: number, data: Buffer): void {
    const end = offset + data.length;
    if (end > this.bmap.imageSize) {
      mismatch(`the image is larger than the ${this.bmap.imageSize} bytes the bmap describes`);
    }
    for (let range = this.bmap.ranges[this.next]; range !== undefined; range = this.bmap.ranges[this.next]) {
      const [start, stop] = rangeBytes(this.bmap, range);
      if (start >= end) return;
      this.hash ??= createHash(this.bmap.checksumType);
      this.hash.update(data.subarray(Math.max(start - offset, 0), Math.min(stop, end) - offset));
      if (stop > end) return;
      if (this.hash.digest('hex') !== range.checksum) {
        mismatch(`range ${range.first}-${range.last} ${this.bmap.checksumType} differs`);
      }
      this.hash = undefined;
      this.next++;
    }
  }

  /** Ends the check once the image is read: `imageBytes` is its decompressed size. */
  finish(imageBytes: number): void {
    if (imageBytes !== this.bmap.imageSize) {
      mismatch(`the bmap describes ${this.bmap.imageSize} bytes but the image has ${imageBytes}`);
    }
  }
}
