/**
 * Writes a decompressed image to the target with large aligned writes: the stream is gathered
 * into a 4 MiB buffer and each buffer's planned spans go out with positional writes at their
 * image offsets (labgrid's `dd oflag=direct bs=512` crawled at <1 MB/s, labgrid #1376).
 *
 * No O_DIRECT: Node cannot allocate the sector-aligned memory it needs, so writes go through the
 * page cache. To keep progress honest and dirty memory bounded, a datasync is started after every
 * 64 MiB and awaited before the next one starts (bmaptool syncs every few MiB for the same
 * reason); the device keeps writing while the next buffers are decompressed. `finishTarget`
 * does the final fsync.
 *
 * Double-buffered: while one buffer's writes are in flight the decompressor fills the other, so
 * decompression and writing overlap instead of taking turns. Backpressure: a full buffer waits
 * for the other one's writes before its own start, so at most two buffers are ever held.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { JigletError } from '../../../protocol/src/errors.js';
import type { WritePlan } from './write-plan.js';
import { RangeRecorder, type WrittenRange } from './written-ranges.js';

/** Size of one gathered buffer: one aligned write (or several, around skipped blocks). */
export const WRITE_BUFFER_BYTES = 4 * 1024 * 1024;

/** Bytes written between periodic datasyncs. */
export const SYNC_EVERY_BYTES = 64 * 1024 * 1024;

/** What the writer writes to. */
export interface WriteTarget {
  /** Resolved path of the block device or file. */
  path: string;
  /** A block device, or a regular file (a virtual DUT's disk). */
  kind: 'block' | 'file';
}

/** Counters reported after each buffer. */
export interface WriteCounters {
  /** Decompressed image bytes consumed. */
  bytesRead: number;
  /** Bytes written to the target. */
  bytesWritten: number;
}

/** Options of `writeImage`. */
export interface WriteImageOptions {
  /** The decompressed image, in order. */
  source: AsyncIterable<Buffer>;
  /** The open target (see `openTarget`). */
  handle: FileHandle;
  /** Its path, for messages. */
  targetPath: string;
  /** Which bytes to write. */
  plan: WritePlan;
  /**
   * Digests of exactly the spans `plan` writes, which `inspect` checks against the image data (a
   * bmap's range checksums): verification then uses them and only the overall SHA-256 is taken.
   * The caller must fail the flash when the check does not pass to its end.
   */
  knownRanges?: readonly WrittenRange[];
  /** Sees every buffer of image data before it is written (the bmap check); may throw. */
  inspect?: (offset: number, data: Buffer) => void;
  /** Called once each buffer's writes are done (the next one is filling meanwhile). */
  onProgress?: (counters: WriteCounters) => void;
  /** Stops between buffers; what was written stays written. */
  signal?: AbortSignal;
}

/** What `writeImage` did. */
export interface WriteResult {
  /** Decompressed size of the image. */
  imageBytes: number;
  /** Bytes written. */
  bytesWritten: number;
  /** Bytes skipped (zero blocks, or blocks the bmap leaves unmapped). */
  bytesSkipped: number;
  /** SHA-256 over the written bytes in order, hex. */
  sha256: string;
  /** Written ranges with their digests, for verification. */
  ranges: WrittenRange[];
}

/**
 * Opens the target for writing. A block device is opened O_EXCL: the kernel then refuses it with
 * EBUSY while it is mounted, used as swap or held by device-mapper/md, and nobody can mount it
 * while the flash runs (a desktop automounter racing the writer).
 */
export async function openTarget(target: WriteTarget): Promise<FileHandle> {
  const flags = target.kind === 'block' ? constants.O_RDWR | constants.O_EXCL : constants.O_RDWR;
  try {
    return await open(target.path, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `${target.path} is in use (mounted, swap, or held by another device): the kernel refused exclusive access`,
      );
    }
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `cannot open ${target.path} for writing: ${code}`,
      );
    }
    throw ioError(`cannot open ${target.path}`, err);
  }
}

/** A failed I/O call: the medium or its reader is the likely culprit. */
function ioError(what: string, err: unknown): JigletError {
  return new JigletError('JIGLET_E_DRIVER_FAILED', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Writes data[start, end) at `position`, retrying short writes. */
async function writeFully(
  handle: FileHandle,
  targetPath: string,
  data: Buffer,
  start: number,
  end: number,
  position: number,
): Promise<void> {
  let at = start;
  while (at < end) {
    let written: number;
    try {
      ({ bytesWritten: written } = await handle.write(data, at, end - at, position + at - start));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') written = 0;
      else throw ioError(`writing ${targetPath} at offset ${position + at - start} failed`, err);
    }
    if (written === 0) {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `the image does not fit: ${targetPath} ends before offset ${position + at - start + 1}`,
      );
    }
    at += written;
  }
}

/** Streams the image to the target following `plan`; see the module comment. */
export async function writeImage(options: WriteImageOptions): Promise<WriteResult> {
  const { handle, targetPath, plan, signal } = options;
  const buffers = [Buffer.allocUnsafe(WRITE_BUFFER_BYTES), Buffer.allocUnsafe(WRITE_BUFFER_BYTES)];
  let buffer = buffers[0]!;
  const recorder = new RangeRecorder(options.knownRanges);
  let fill = 0;
  let offset = 0; // image offset of buffer[0]
  let bytesWritten = 0;
  let sinceSync = 0;
  // The previous buffer's writes; resolves to their error, if any, so a failure never sits
  // unhandled while the next buffer fills.
  let inFlight: Promise<unknown> | undefined;
  // Resolves to the sync's error, if any: a rejection must not sit unhandled until awaited.
  let pendingSync: Promise<unknown> | undefined;

  const awaitWrites = async (): Promise<void> => {
    const error = await inFlight;
    inFlight = undefined;
    if (error !== undefined) throw error;
  };

  const awaitSync = async (): Promise<void> => {
    const error = await pendingSync;
    pendingSync = undefined;
    if (error !== undefined) throw ioError(`syncing ${targetPath} failed`, error);
  };

  const flush = async (): Promise<void> => {
    const data = buffer.subarray(0, fill);
    const at = offset;
    options.inspect?.(at, data);
    await plan.prepare?.(at, at + data.length);
    const spans = [...plan.spans(at, data)];
    // Hashed here, in image order, while the other buffer's writes are still in flight.
    for (const [start, end] of spans) recorder.add(at + start, data.subarray(start, end));
    // The previous buffer is on the medium: report it, and stop here if asked to.
    if (inFlight) {
      await awaitWrites();
      options.onProgress?.({ bytesRead: at, bytesWritten });
    }
    signal?.throwIfAborted();
    inFlight = (async () => {
      for (const [start, end] of spans) {
        await writeFully(handle, targetPath, data, start, end, at + start);
        bytesWritten += end - start;
        sinceSync += end - start;
      }
    })().then(
      () => undefined,
      (err: unknown) => err ?? new Error('write failed'),
    );
    offset += fill;
    fill = 0;
    buffer = buffer === buffers[0] ? buffers[1]! : buffers[0]!;
    if (sinceSync >= SYNC_EVERY_BYTES) {
      await awaitSync();
      pendingSync = handle.datasync().then(
        () => undefined,
        (err: unknown) => err ?? new Error('datasync failed'),
      );
      sinceSync = 0;
    }
  };

  try {
    for await (const chunk of options.source) {
      signal?.throwIfAborted();
      for (let at = 0; at < chunk.length; ) {
        const copied = chunk.copy(buffer, fill, at);
        fill += copied;
        at += copied;
        if (fill === buffer.length) await flush();
      }
    }
    signal?.throwIfAborted();
    if (fill > 0) await flush();
    await awaitWrites();
    options.onProgress?.({ bytesRead: offset, bytesWritten });
    await awaitSync();
  } finally {
    // On failure the first error is what matters; writes and a sync still running must end
    // before the caller closes the handle, and their own errors (if any) add nothing.
    await inFlight;
    await pendingSync;
  }
  const written = recorder.finish();
  return {
    imageBytes: offset,
    bytesWritten,
    bytesSkipped: offset - bytesWritten,
    sha256: written.sha256,
    ranges: written.ranges,
  };
}

/**
 * Makes the write durable: a regular-file target is extended to the image size (skipped zero
 * blocks at its end are holes), then everything is fsync'ed.
 */
export async function finishTarget(
  handle: FileHandle,
  target: WriteTarget,
  imageBytes: number,
): Promise<void> {
  try {
    if (target.kind === 'file' && (await handle.stat()).size < imageBytes) await handle.truncate(imageBytes);
    await handle.sync();
  } catch (err) {
    throw ioError(`syncing ${target.path} failed`, err);
  }
}
