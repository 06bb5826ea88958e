/**
 * One flash of a DUT's boot medium, end to end: check the image (and bmap) before touching any
 * hardware, switch the mux to the host, wait for the block device, check it is safe to write,
 * stream-decompress and write, fsync, read back and compare, and switch the medium back to the
 * DUT — in a `finally`, so the DUT gets its medium back whatever failed.
 */
import { createReadStream } from 'node:fs';
import type { FlashProgress } from '../../../protocol/src/driver-events.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { step as recordStep, type StepSink } from '../../../protocol/src/step.js';
import type { StorageMux } from '../storage-mux.js';
import { type ArrivingImage, readArrivingImage, waitForArrivingBytes } from './arriving-image.js';
import { finishTarget, openTarget, type WriteResult, writeImage } from './block-writer.js';
import { type Bmap, BmapChecker, bmapWrittenRanges, readBmap } from './bmap.js';
import { decompressStream } from './decompress.js';
import { checkFlashTarget, type FlashTarget, type SafetyRoots } from './device-safety.js';
import { HEAD_BYTES, type ImageInfo, inspectImage } from './image-format.js';
import { imageSizeHint } from './image-size.js';
import { ProgressTracker } from './progress.js';
import { NO_VERIFY_WARNING, verifyWritten } from './verify.js';
import { bmapPlan, writeAllPlan, zeroSkipPlan } from './write-plan.js';
import { canZeroCheaply, type ZeroedExtent, zeroTarget } from './zero-target.js';

/** Read size of the image file: big reads keep the decompressor fed without many syscalls. */
const IMAGE_READ_BYTES = 1024 * 1024;

/** The recorded actions of a flash. */
export type FlashAction =
  | 'inspect-image'
  | 'mux-to-host'
  | 'resolve-device'
  | 'check-device'
  | 'zero'
  | 'write'
  | 'sync'
  | 'verify'
  | 'mux-to-dut';

/** Options of `flashDut`. */
export interface FlashDutOptions {
  /** Path of the image: raw, .gz, .xz or .zst (detected from its content). */
  image: string;
  /**
   * The image file is still being written (an upload into the agent's cache): read it as it
   * grows to this size and check this SHA-256 (arriving-image.ts).
   */
  arriving?: ArrivingImage;
  /** Path of a bmaptool .bmap for the (decompressed) image. */
  bmap?: string;
  /** The DUT's storage mux. */
  mux: StorageMux;
  /** Waits (with the caller's deadline) for the medium's block device after the switch; returns its path. */
  resolveDevice: (signal: AbortSignal) => Promise<string>;
  /** Read the written data back and compare; false prints a loud warning instead. */
  verify: boolean;
  /** Allow a regular file as the target (a virtual DUT's disk). */
  allowFile?: boolean;
  /** Skip all-zero 4 KiB blocks when there is no bmap (default true). */
  skipZeroBlocks?: boolean;
  /** Receives progress reports (see progress.ts). */
  onProgress?: (progress: FlashProgress) => void;
  /** Receives one step per action (protocol's step.ts). */
  onStep?: StepSink;
  /** Receives warnings (verification off, reads that may come from the page cache). */
  onWarning?: (message: string) => void;
  /** Stops the flash (between buffers); the medium still goes back to the DUT. */
  signal?: AbortSignal;
  /** procfs/sysfs roots for the device-safety check (tests). */
  safetyRoots?: SafetyRoots;
}

/** What a successful flash did. */
export interface FlashSummary {
  /** The resolved device (or file) written. */
  device: string;
  /** Decompressed image size. */
  imageBytes: number;
  /** Bytes written. */
  bytesWritten: number;
  /** Bytes skipped (zero blocks or bmap-unmapped blocks): neither written nor verified. */
  bytesSkipped: number;
  /** SHA-256 over the written bytes, in order. */
  sha256: string;
  /** Wall-clock duration of the whole flash, mux switching included. */
  seconds: number;
  /** True when the written data was read back and matched. */
  verified: boolean;
}

/** A flash's inputs, checked before any hardware is touched. */
interface CheckedImage {
  info: ImageInfo;
  bmap: Bmap | undefined;
  totalBytes: number | null;
  totalExact: boolean;
}

async function checkInputs(options: FlashDutOptions, signal: AbortSignal): Promise<CheckedImage> {
  const { arriving } = options;
  if (arriving) await waitForArrivingBytes(options.image, Math.min(HEAD_BYTES, arriving.size), { signal });
  const info = await inspectImage(options.image, arriving?.size);
  // A compressed image's size is told by its end, which an arriving one does not have yet.
  const hint = arriving && info.format !== 'raw' ? { bytes: null, exact: false } : await imageSizeHint(info);
  const bmap = options.bmap === undefined ? undefined : await readBmap(options.bmap);
  if (bmap !== undefined && hint.exact && hint.bytes !== bmap.imageSize) {
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `bmap does not match the image: the bmap describes ${bmap.imageSize} bytes but ${info.name} has ${hint.bytes}`,
    );
  }
  if (bmap !== undefined) return { info, bmap, totalBytes: bmap.imageSize, totalExact: true };
  return { info, bmap, totalBytes: hint.bytes, totalExact: hint.exact };
}

/** The error to report when the flash failed with `first` and switching back failed with `second`. */
function combine(first: unknown, second: unknown): unknown {
  const also = `; switching the medium back to the DUT failed too: ${(second as Error).message}`;
  if (first instanceof JigletError)
    return new JigletError(first.code, `${first.message}${also}`, { cause: first });
  return new JigletError('JIGLET_E_INTERNAL', `${(first as Error).message}${also}`, { cause: first });
}

/** Flashes the DUT's medium; see the module comment. Resolves with a summary or rejects with a coded error. */
export async function flashDut(options: FlashDutOptions): Promise<FlashSummary> {
  const started = performance.now();
  const signal = options.signal ?? new AbortController().signal;
  const progress = new ProgressTracker((report) => options.onProgress?.(report));
  const step: Step = (action, target, work) => recordStep(options.onStep, { action, target }, work);

  const image = await step('inspect-image', options.image, () => checkInputs(options, signal));
  if (!options.verify) options.onWarning?.(NO_VERIFY_WARNING);
  let summary: Omit<FlashSummary, 'seconds'>;
  progress.phase('host');
  // Whatever fails from here on, the DUT gets its medium back (catch below, or the normal end).
  try {
    await step('mux-to-host', undefined, () => options.mux.toHost());
    signal.throwIfAborted();
    progress.phase('wait-device');
    const device = await step('resolve-device', undefined, () => options.resolveDevice(signal));
    signal.throwIfAborted();
    const target = await step('check-device', device, () =>
      checkFlashTarget(device, { allowFile: options.allowFile, ...options.safetyRoots }),
    );
    if (target.sizeBytes !== null && image.totalExact && (image.totalBytes ?? 0) > target.sizeBytes) {
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `${image.info.name} (${image.totalBytes} bytes) does not fit on ${device} (${target.sizeBytes} bytes)`,
      );
    }
    const written = await writeAndSync(options, image, target, progress, step, signal);
    let verified = false;
    if (options.verify) {
      progress.phase('verify', { bytesRead: 0, totalBytes: written.bytesWritten, totalExact: true });
      await step('verify', target.path, () =>
        verifyWritten(target, written, {
          onProgress: (bytesRead) => progress.update({ bytesRead }),
          onWarning: options.onWarning,
          signal,
        }),
      );
      verified = true;
    }
    summary = { device: target.path, ...pick(written), verified };
  } catch (err) {
    progress.phase('dut');
    try {
      await step('mux-to-dut', undefined, () => options.mux.toDut());
    } catch (muxError) {
      throw combine(err, muxError);
    }
    throw err;
  }
  progress.phase('dut');
  await step('mux-to-dut', undefined, () => options.mux.toDut());
  progress.phase('done', {
    bytesRead: summary.imageBytes,
    bytesWritten: summary.bytesWritten,
    totalBytes: summary.imageBytes,
    totalExact: true,
  });
  return { ...summary, seconds: Math.round(performance.now() - started) / 1000 };
}

function pick(written: WriteResult): Omit<FlashSummary, 'seconds' | 'device' | 'verified'> {
  const { imageBytes, bytesWritten, bytesSkipped, sha256 } = written;
  return { imageBytes, bytesWritten, bytesSkipped, sha256 };
}

/** Runs one flash action as a recorded step. */
type Step = <T>(action: FlashAction, target: string | undefined, work: () => Promise<T>) => Promise<T>;

/** Opens the target, streams the image onto it, and makes it durable. */
async function writeAndSync(
  options: FlashDutOptions,
  image: CheckedImage,
  target: FlashTarget,
  progress: ProgressTracker,
  step: Step,
  signal: AbortSignal,
): Promise<WriteResult> {
  const { info, bmap } = image;
  // Skipping zero blocks is only correct on a medium that reads zeros there (zero-target.ts): zero
  // it first where that is cheap, and otherwise write the zero blocks too.
  let zeroed: ZeroedExtent | undefined;
  if (!bmap && options.skipZeroBlocks !== false) {
    if (canZeroCheaply(target.path)) {
      // The image's extent at once where it is known; otherwise the plan zeroes ahead as it goes.
      const extent = image.totalBytes ?? 0;
      zeroed = await step('zero', target.path, () =>
        zeroTarget(target.path, extent, { deviceBytes: target.sizeBytes, signal }),
      );
    } else {
      options.onWarning?.(`${target.path} cannot zero itself cheaply: writing the zero blocks too`);
    }
  }
  const handle = await openTarget(target);
  try {
    progress.phase('write', {
      bytesRead: 0,
      bytesWritten: 0,
      totalBytes: image.totalBytes,
      totalExact: image.totalExact,
    });
    const checker = bmap === undefined ? undefined : new BmapChecker(bmap);
    const plan = bmap ? bmapPlan(bmap) : zeroed ? zeroSkipPlan(zeroed) : writeAllPlan();
    const result = await step('write', target.path, async () => {
      const arriving = options.arriving && readArrivingImage(info.path, options.arriving, { signal });
      const file = arriving?.stream ?? createReadStream(info.path, { highWaterMark: IMAGE_READ_BYTES });
      const source = decompressStream(info.format, file, info.name);
      try {
        const written = await writeImage({
          source,
          handle,
          targetPath: target.path,
          plan,
          // The bmap's checksums are checked against the data as it streams: no second hash.
          ...(bmap && { knownRanges: bmapWrittenRanges(bmap) }),
          inspect: checker && ((offset, data) => checker.update(offset, data)),
          onProgress: (counters) => progress.update(counters),
          signal,
        });
        checker?.finish(written.imageBytes);
        if (arriving) {
          // Every decoder reads its input to the end; one that did not leaves bytes unchecked.
          if (!arriving.stream.readableEnded) arriving.stream.destroy();
          await arriving.checked;
        }
        if (!bmap && image.totalExact && image.totalBytes !== written.imageBytes) {
          throw new JigletError(
            'JIGLET_E_INVALID_ARGUMENT',
            `${info.name} is truncated or corrupt: it decompressed to ${written.imageBytes} bytes, its index says ${image.totalBytes}`,
          );
        }
        return written;
      } finally {
        source.destroy();
      }
    });
    progress.phase('sync');
    await step('sync', target.path, () => finishTarget(handle, target, result.imageBytes));
    return result;
  } finally {
    await handle.close();
  }
}
