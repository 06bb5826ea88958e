/**
 * What an image file is, from its first bytes: gzip, xz, zstd or raw — or clearly not a disk image
 * at all. A download that went wrong (an HTML error page, a zip of the image, an ELF binary picked
 * by mistake) is refused before any hardware is touched, instead of being written to the card as
 * if it were a disk and leaving the DUT unbootable with no hint why.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';

/** How an image file is compressed; `raw` is an uncompressed disk image. */
export type ImageFormat = 'raw' | 'gzip' | 'xz' | 'zstd';

/** Bytes `inspectImage` reads: enough for every signature below (tar's lies at offset 257). */
export const HEAD_BYTES = 4096;

/** One sector: a raw image smaller than this cannot hold a partition table or a filesystem. */
const MIN_RAW_BYTES = 512;

const COMPRESSED: ReadonlyArray<readonly [ImageFormat, Buffer]> = [
  ['gzip', Buffer.from([0x1f, 0x8b])],
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
];

/** Signatures of files people download or pick instead of the image; the text says what it is. */
const NOT_IMAGES: ReadonlyArray<readonly [Buffer, string]> = [
  [Buffer.from('PK\x03\x04', 'latin1'), 'looks like a zip archive (unzip it and flash the .img inside)'],
  [Buffer.from('\x7fELF', 'latin1'), 'looks like an ELF executable'],
  [Buffer.from('7z\xbc\xaf\x27\x1c', 'latin1'), 'looks like a 7-Zip archive (extract the image first)'],
  [Buffer.from('BZh', 'latin1'), 'is bzip2-compressed, which is not supported (use xz, gzip or zstd)'],
  [Buffer.from([0x04, 0x22, 0x4d, 0x18]), 'is lz4-compressed, which is not supported (use xz, gzip or zstd)'],
];

/** An image file as inspected before flashing. */
export interface ImageInfo {
  /** The path as given. */
  path: string;
  /** Its base name, for messages. */
  name: string;
  /** Its compression, from the magic bytes. */
  format: ImageFormat;
  /** Its size on disk (compressed size for compressed formats). */
  fileSize: number;
}

/** The compression named by the magic bytes at the start of `head`; anything else is `raw`. */
export function detectFormat(head: Uint8Array): ImageFormat {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  for (const [format, magic] of COMPRESSED) {
    if (bytes.subarray(0, magic.length).equals(magic)) return format;
  }
  return 'raw';
}

/** True when every byte is printable ASCII or common whitespace: a disk's first sector never is. */
function isAsciiText(bytes: Buffer): boolean {
  for (const b of bytes) {
    if (b === 0x09 || b === 0x0a || b === 0x0d) continue;
    if (b < 0x20 || b > 0x7e) return false;
  }
  return true;
}

/**
 * Why a file starting with `head` (of `fileSize` bytes) is clearly not a disk image, or
 * undefined when it may be one. Compressed files are judged by their magic only.
 */
export function notAnImageReason(head: Uint8Array, fileSize: number): string | undefined {
  if (fileSize === 0) return 'is empty';
  if (detectFormat(head) !== 'raw') return undefined;
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  // A UTF-8 byte-order mark and leading blank lines are common in saved web pages.
  const text = bytes
    .subarray(0, 512)
    .toString('latin1')
    .replace(/^\xef\xbb\xbf/, '')
    .trimStart()
    .toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html')) return 'looks like HTML';
  if (text.startsWith('<?xml')) return 'looks like XML (a .bmap file given as the image?)';
  for (const [magic, reason] of NOT_IMAGES) {
    if (bytes.subarray(0, magic.length).equals(magic)) return reason;
  }
  if (bytes.subarray(257, 262).toString('latin1') === 'ustar') {
    return 'looks like a tar archive (extract the image first)';
  }
  if (fileSize < MIN_RAW_BYTES) return `is only ${fileSize} bytes, less than one 512-byte sector`;
  if (isAsciiText(bytes.subarray(0, 512))) return 'looks like a text file';
  return undefined;
}

/**
 * Reads the start of the image file and names its format. Throws JIGLET_E_INVALID_ARGUMENT when
 * the file cannot be read or is clearly not a disk image ("image.img: not a disk image: looks like HTML").
 */
export async function inspectImage(imagePath: string, arrivingSize?: number): Promise<ImageInfo> {
  const name = path.basename(imagePath);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(imagePath, 'r');
  } catch (err) {
    throw invalidArgument(`cannot open image ${imagePath}: ${(err as Error).message}`);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw invalidArgument(`image ${imagePath} is not a regular file`);
    // An image still arriving is judged by the size it will have (its head is there already).
    const fileSize = arrivingSize ?? stats.size;
    const head = Buffer.alloc(Math.min(HEAD_BYTES, fileSize));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const start = head.subarray(0, bytesRead);
    const reason = notAnImageReason(start, fileSize);
    if (reason !== undefined) throw invalidArgument(`${name}: not a disk image: ${reason}`);
    return { path: imagePath, name, format: detectFormat(start), fileSize };
  } finally {
    await handle.close();
  }
}
