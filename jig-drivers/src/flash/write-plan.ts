/**
 * Which bytes of the image get written. Without a bmap, blocks that are entirely zero are skipped
 * (4 KiB granularity within each buffer); with a bmap, only its mapped ranges are written and
 * nothing inside them is skipped, as bmaptool does. Skipped bytes are neither written nor
 * verified: whatever the medium held there before stays, exactly like bmaptool's unmapped blocks.
 */
import { type Bmap, rangeBytes } from './bmap.js';
import type { ZeroedExtent } from './zero-target.js';

/** Granularity of zero-block skipping: the page size, and the block size of every common filesystem. */
export const ZERO_BLOCK_BYTES = 4096;

const ZEROS = Buffer.alloc(ZERO_BLOCK_BYTES);

/** A [start, end) byte span, relative to the buffer it was computed for. */
export type Span = readonly [start: number, end: number];

/** Decides which parts of each buffer are written; buffers come in image order. */
export interface WritePlan {
  /** Work that must be done on the target before the buffer at image bytes [offset, end) is planned. */
  prepare?(offset: number, end: number): Promise<void>;
  /** The spans of `data` (the image bytes at image offset `offset`) to write, ascending. */
  spans(offset: number, data: Buffer): Span[];
}

/** Appends [start, end) to `spans`, merging it into the last span when they touch. */
function pushSpan(spans: Span[], start: number, end: number): void {
  const last = spans.at(-1);
  if (last !== undefined && last[1] === start) spans[spans.length - 1] = [last[0], end];
  else spans.push([start, end]);
}

/** Writes every byte. */
export function writeAllPlan(): WritePlan {
  return { spans: (_offset, data) => (data.length > 0 ? [[0, data.length]] : []) };
}

/**
 * Writes every 4 KiB block that is not entirely zero (a short last block is judged alone), where
 * the target is known to read zeros: it zeroes ahead of each buffer (`zeroed.extend`), and past
 * what it could zero (the end of the device) it writes zero blocks too.
 */
export function zeroSkipPlan(zeroed: ZeroedExtent): WritePlan {
  return {
    prepare: (_offset, end) => zeroed.extend(end),
    spans(offset, data) {
      const spans: Span[] = [];
      for (let start = 0; start < data.length; start += ZERO_BLOCK_BYTES) {
        const end = Math.min(start + ZERO_BLOCK_BYTES, data.length);
        // Buffer.equals is a memcmp: far faster than a byte loop in JavaScript.
        const skip =
          offset + end <= zeroed.bytes && data.subarray(start, end).equals(ZEROS.subarray(0, end - start));
        if (!skip) pushSpan(spans, start, end);
      }
      return spans;
    },
  };
}

/** Writes exactly the bmap's mapped ranges. */
export function bmapPlan(bmap: Bmap): WritePlan {
  let next = 0; // first range that may still overlap the buffers to come
  return {
    spans(offset, data) {
      const spans: Span[] = [];
      const end = offset + data.length;
      for (let i = next; i < bmap.ranges.length; i++) {
        const [start, stop] = rangeBytes(bmap, bmap.ranges[i]!);
        if (start >= end) break;
        if (stop <= offset) {
          next = i + 1;
          continue;
        }
        pushSpan(spans, Math.max(start, offset) - offset, Math.min(stop, end) - offset);
      }
      return spans;
    },
  };
}
