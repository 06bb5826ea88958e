/**
 * How big an image is once decompressed, read from the file's own metadata without decompressing
 * it: the raw file size, the xz index, the zstd frame header, or the gzip ISIZE trailer. The total
 * drives the progress ETA and the device-capacity check; an .xz whose end is missing or that holds
 * several streams is refused here, before any hardware is touched.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { JigletError } from '../../../protocol/src/errors.js';
import type { ImageInfo } from './image-format.js';

/** What is known about the decompressed size. */
export interface SizeHint {
  /** Decompressed bytes, or null when the file does not say. */
  bytes: number | null;
  /** True when `bytes` is exact (raw, xz index); false for an estimate (gzip ISIZE, zstd first frame). */
  exact: boolean;
}

const XZ_FOOTER_BYTES = 12;
const XZ_HEADER_BYTES = 12;
/** Stream padding longer than this is not an xz file anyone produced on purpose. */
const MAX_XZ_PADDING_BYTES = 1 << 20;
const GZIP_MIN_BYTES = 18;

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

function corrupt(info: ImageInfo, detail: string): JigletError {
  return new JigletError('JIGLET_E_INVALID_ARGUMENT', `${info.name} is truncated or corrupt: ${detail}`);
}

/** Reads xz's variable-length integer at `at`; returns [value, next offset]. */
function readVarint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bytes[at + i];
    if (byte === undefined) break;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, at + i + 1];
  }
  throw new RangeError('bad variable-length integer in the xz index');
}

/**
 * The uncompressed size from the xz index (xz file format 1.2, §4–5). Also proves the file ends
 * where an xz stream ends: a download cut short has no footer, and a file of several concatenated
 * streams is refused because xz-embedded decodes the first stream only and would stop early.
 */
async function xzSize(info: ImageInfo, handle: FileHandle): Promise<SizeHint> {
  let end = info.fileSize;
  // Stream padding: zero bytes in units of four after the last stream.
  while (end >= XZ_HEADER_BYTES + XZ_FOOTER_BYTES && info.fileSize - end < MAX_XZ_PADDING_BYTES) {
    const word = await readAt(handle, end - 4, 4);
    if (word.readUInt32LE(0) !== 0) break;
    end -= 4;
  }
  if (end < XZ_HEADER_BYTES + XZ_FOOTER_BYTES) throw corrupt(info, 'too short for an xz stream');
  const footer = await readAt(handle, end - XZ_FOOTER_BYTES, XZ_FOOTER_BYTES);
  if (footer.subarray(10, 12).toString('latin1') !== 'YZ') {
    throw corrupt(info, 'no xz stream footer at the end of the file (an interrupted download?)');
  }
  const indexBytes = (footer.readUInt32LE(4) + 1) * 4;
  const indexStart = end - XZ_FOOTER_BYTES - indexBytes;
  if (indexStart < XZ_HEADER_BYTES) throw corrupt(info, 'the xz index lies outside the file');
  const index = await readAt(handle, indexStart, indexBytes);
  let records: number;
  let at: number;
  let blocksBytes = 0;
  let uncompressed = 0;
  try {
    if (index[0] !== 0) throw new RangeError('no xz index where the footer points');
    [records, at] = readVarint(index, 1);
    for (let i = 0; i < records; i++) {
      let unpadded: number;
      let size: number;
      [unpadded, at] = readVarint(index, at);
      [size, at] = readVarint(index, at);
      blocksBytes += Math.ceil(unpadded / 4) * 4;
      uncompressed += size;
    }
  } catch (err) {
    throw corrupt(info, (err as Error).message);
  }
  const streamBytes = XZ_HEADER_BYTES + blocksBytes + indexBytes + XZ_FOOTER_BYTES;
  if (streamBytes < end) {
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `${info.name} holds several xz streams (concatenated files), which the decoder cannot read; ` +
        'recompress the image into one stream with `xz`',
    );
  }
  if (streamBytes > end) throw corrupt(info, 'the xz index describes more data than the file holds');
  return { bytes: uncompressed, exact: true };
}

/** Frame_Content_Size of the first zstd frame (RFC 8878 §3.1.1.1), when the compressor wrote it. */
async function zstdSize(handle: FileHandle): Promise<SizeHint> {
  const header = await readAt(handle, 0, 18);
  const descriptor = header[4] ?? 0;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictIdBytes = [0, 1, 2, 4][descriptor & 3] ?? 0;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag] ?? 0;
  const at = 5 + (singleSegment ? 0 : 1) + dictIdBytes;
  if (fcsBytes === 0 || header.length < at + fcsBytes) return { bytes: null, exact: false };
  let size: number;
  if (fcsBytes === 1) size = header.readUInt8(at);
  else if (fcsBytes === 2) size = header.readUInt16LE(at) + 256;
  else if (fcsBytes === 4) size = header.readUInt32LE(at);
  else size = Number(header.readBigUInt64LE(at));
  // Only the first frame's size: a multi-frame file (pzstd) is bigger, hence an estimate.
  return { bytes: size, exact: false };
}

/**
 * gzip's ISIZE trailer is the size modulo 4 GiB. Below the compressed size it has certainly
 * wrapped (deflate never shrinks data); above, it is taken as an estimate that progress drops as
 * soon as more bytes than that come out.
 */
async function gzipSize(info: ImageInfo, handle: FileHandle): Promise<SizeHint> {
  if (info.fileSize < GZIP_MIN_BYTES) throw corrupt(info, 'too short for a gzip file');
  const isize = (await readAt(handle, info.fileSize - 4, 4)).readUInt32LE(0);
  // Stored (incompressible) deflate blocks cost 5 bytes per 64 KiB plus the 18-byte frame.
  const wrapped = isize + Math.ceil(isize / 65535) * 5 + GZIP_MIN_BYTES < info.fileSize;
  return { bytes: wrapped ? null : isize, exact: false };
}

/** What the image file says about its decompressed size; throws for an .xz that is cut short. */
export async function imageSizeHint(info: ImageInfo): Promise<SizeHint> {
  if (info.format === 'raw') return { bytes: info.fileSize, exact: true };
  const handle = await open(info.path, 'r');
  try {
    if (info.format === 'xz') return await xzSize(info, handle);
    if (info.format === 'zstd') return await zstdSize(handle);
    return await gzipSize(info, handle);
  } finally {
    await handle.close();
  }
}
