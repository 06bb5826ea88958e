/**
 * The record of what was written: byte ranges of the target, each with a digest of its bytes,
 * plus one SHA-256 over all written bytes in order. Verification reads the same ranges back;
 * per-range digests let a mismatch name where on the medium it is.
 */
import { createHash, type Hash } from 'node:crypto';

/**
 * Longest range with one digest. Contiguous writes are merged up to this size, so a mismatch is
 * located to within 64 MiB while a mostly-full image still needs only ~16 records per GiB.
 */
export const MAX_RANGE_BYTES = 64 * 1024 * 1024;

/** A digest algorithm of written ranges: our own SHA-256, or what a bmap's ranges carry. */
export type RangeDigestAlgorithm = 'sha256' | 'sha1';

/** A written byte range of the target and the digest (hex) of its bytes. */
export interface WrittenRange {
  /** Byte offset on the target. */
  offset: number;
  /** Length in bytes. */
  length: number;
  /** The digest's algorithm. */
  algorithm: RangeDigestAlgorithm;
  /** Digest of the bytes, hex. */
  digest: string;
}

/** What the writer hands to verification. */
export interface WrittenData {
  /** The written ranges, ascending. */
  ranges: WrittenRange[];
  /** SHA-256 over all written bytes in range order, hex. */
  sha256: string;
}

/**
 * Collects written ranges and their digests; `add` must be called in ascending offset order.
 * Given `known` ranges (a bmap's, whose checksums were checked against the very bytes written),
 * it takes those instead of hashing every byte a second time and keeps only the overall digest.
 */
export class RangeRecorder {
  private readonly ranges: WrittenRange[];
  private readonly all = createHash('sha256');
  private current: { offset: number; length: number; hash: Hash } | undefined;

  /** Records its own ranges, or reports `known` ones (see the class comment). */
  constructor(private readonly known?: readonly WrittenRange[]) {
    this.ranges = known === undefined ? [] : [...known];
  }

  /** Records that `data` was written at target offset `offset`. */
  add(offset: number, data: Buffer): void {
    if (data.length === 0) return;
    if (this.known !== undefined) {
      this.all.update(data);
      return;
    }
    const open = this.current;
    if (
      open === undefined ||
      open.offset + open.length !== offset ||
      open.length + data.length > MAX_RANGE_BYTES
    ) {
      this.close();
      this.current = { offset, length: 0, hash: createHash('sha256') };
    }
    const range = this.current!;
    range.hash.update(data);
    range.length += data.length;
    this.all.update(data);
  }

  private close(): void {
    if (this.current === undefined) return;
    const { offset, length, hash } = this.current;
    this.ranges.push({ offset, length, algorithm: 'sha256', digest: hash.digest('hex') });
    this.current = undefined;
  }

  /** Ends recording and returns the ranges and the overall digest. */
  finish(): WrittenData {
    this.close();
    return { ranges: this.ranges, sha256: this.all.digest('hex') };
  }
}
