/**
 * Follows the frame layout of a zstd stream (RFC 8878 §3.1) — frame headers and block sizes only,
 * no decoding — to find where each frame ends and which content checksum it carries. The
 * decompressor splits its input at frame ends so every frame's output can be checked against its
 * checksum, which fzstd itself skips.
 */

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** Where a scan stopped. */
export interface ScanResult {
  /** Index in the scanned data just after the last byte consumed. */
  end: number;
  /** Set when a frame ended at `end`: its content checksum (low 32 bits of XXH64), if it has one. */
  frameEnd?: { checksum: number | undefined };
}

type State =
  | 'magic'
  | 'skippable-size'
  | 'skip'
  | 'descriptor'
  | 'header'
  | 'block-header'
  | 'block'
  | 'checksum';

/** Tracks frame boundaries across pushes of compressed bytes; throws RangeError on a malformed stream. */
export class ZstdFrameScanner {
  private state: State = 'magic';
  private readonly field = Buffer.alloc(4);
  private fieldBytes = 0;
  private fieldWanted = 4;
  private remaining = 0; // bytes to skip in 'skip', 'header' and 'block'
  private hasChecksum = false;
  private lastBlock = false;

  /** True between frames: a stream may end here. */
  get atFrameBoundary(): boolean {
    return this.state === 'magic' && this.fieldBytes === 0;
  }

  /** Consumes `data` from `from` up to its end, or up to and including the end of the current frame. */
  scan(data: Uint8Array, from = 0): ScanResult {
    let at = from;
    while (at < data.length) {
      if (this.state === 'skip' || this.state === 'header' || this.state === 'block') {
        const take = Math.min(this.remaining, data.length - at);
        at += take;
        this.remaining -= take;
        if (this.remaining > 0) break;
        const ended = this.afterSkip();
        if (ended) return { end: at, frameEnd: ended };
        continue;
      }
      const take = Math.min(this.fieldWanted - this.fieldBytes, data.length - at);
      this.field.set(data.subarray(at, at + take), this.fieldBytes);
      this.fieldBytes += take;
      at += take;
      if (this.fieldBytes < this.fieldWanted) break;
      this.fieldBytes = 0;
      const ended = this.onField();
      if (ended) return { end: at, frameEnd: ended };
    }
    return { end: at };
  }

  private expect(state: State, bytes: number): void {
    this.state = state;
    this.fieldWanted = bytes;
  }

  private skip(state: State, bytes: number): { checksum: number | undefined } | undefined {
    this.state = state;
    this.remaining = bytes;
    return bytes === 0 ? this.afterSkip() : undefined;
  }

  /** A complete field is in `this.field`; returns frame-end info when the frame ended. */
  private onField(): { checksum: number | undefined } | undefined {
    switch (this.state) {
      case 'magic': {
        const magic = this.field.readUInt32LE(0);
        if (magic === ZSTD_MAGIC) this.expect('descriptor', 1);
        else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) this.expect('skippable-size', 4);
        else throw new RangeError('not a zstd frame where one should start');
        return undefined;
      }
      case 'skippable-size':
        return this.skip('skip', this.field.readUInt32LE(0));
      case 'descriptor': {
        const descriptor = this.field[0]!;
        if (descriptor & 0x08) throw new RangeError('reserved bit set in a zstd frame header');
        const singleSegment = (descriptor >> 5) & 1;
        const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
        const dictIdBytes = [0, 1, 2, 4][descriptor & 3]!;
        this.hasChecksum = ((descriptor >> 2) & 1) === 1;
        return this.skip('header', (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes);
      }
      case 'block-header': {
        const header = this.field.readUIntLE(0, 3);
        const type = (header >> 1) & 3;
        if (type === 3) throw new RangeError('reserved zstd block type');
        this.lastBlock = (header & 1) === 1;
        const size = header >>> 3;
        return this.skip('block', type === 1 ? 1 : size); // an RLE block stores one byte
      }
      case 'checksum': {
        this.expect('magic', 4);
        return { checksum: this.field.readUInt32LE(0) };
      }
      default:
        throw new RangeError(`zstd scanner in state ${this.state} with a field`);
    }
  }

  /** A skipped span ended; returns frame-end info when that ended the frame. */
  private afterSkip(): { checksum: number | undefined } | undefined {
    switch (this.state) {
      case 'skip':
        this.expect('magic', 4);
        return { checksum: undefined };
      case 'header':
        this.expect('block-header', 3);
        return undefined;
      default: // 'block'
        if (!this.lastBlock) {
          this.expect('block-header', 3);
          return undefined;
        }
        if (this.hasChecksum) {
          this.expect('checksum', 4);
          return undefined;
        }
        this.expect('magic', 4);
        return { checksum: undefined };
    }
  }
}
