/**
 * `jig-driver flash`: the job the agent runs to flash a DUT's medium.
 *   jig-driver flash --image PATH [--bmap PATH] [--no-verify] --device PATH --mux-json JSON|@FILE|none
 *                    [--allow-file] [--no-skip-zeros] [--device-timeout-ms 60000]
 *                    [--arriving-size BYTES --arriving-sha256 HEX]
 * With --arriving-*, the image file is still being written (an upload into the agent's cache):
 * it is read as it grows and its SHA-256 checked at the end (arriving-image.ts).
 * stdout: progress JSON lines. stderr: one JSON step line per action, warnings, on failure a JSON
 * `failed` line with the error's code, and a last line saying what happened (protocol's
 * driver-events.ts has the line formats). Exit 0 on success, 1 with a one-line reason on failure,
 * 64 on bad usage, 128+n when stopped by signal n (SIGTERM aborts between buffers, then the
 * medium goes back to the DUT).
 */

import type { Argv, CommandModule } from 'yargs';
import { driverEventLine, failureOf } from '../../../protocol/src/driver-events.js';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { readConfigArg } from '../config-arg.js';
import type { StorageMux } from '../storage-mux.js';
import { waitForPathWithin } from '../wait-for-path.js';
import type { ArrivingImage } from './arriving-image.js';
import { flashDut } from './flash-dut.js';

/** Exit code for a bad invocation (sysexits EX_USAGE). */
export const EXIT_USAGE = 64;
/** Exit code for a failed flash. */
export const EXIT_FAILURE = 1;
/** Default wait for the device to appear after the mux switched to the host. */
export const DEFAULT_DEVICE_TIMEOUT_MS = 60_000;

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;

/** Parsed `jig-driver flash` arguments. */
export interface FlashCliArgs {
  /** Image path. */
  image: string;
  /** bmap path. */
  bmap?: string;
  /** Read back and compare (`--no-verify` turns it off). */
  verify: boolean;
  /** Block device (or, with allowFile, file) to write. */
  device: string;
  /** Storage mux config as JSON, or `none`. */
  muxJson: string;
  /** Allow a regular file as the device. */
  allowFile: boolean;
  /** Skip all-zero blocks when there is no bmap. */
  skipZeros: boolean;
  /** How long to wait for the device to appear. */
  deviceTimeoutMs: number;
  /** The image is still arriving: its final size (--arriving-size)… */
  arrivingSize?: number;
  /** …and SHA-256 (--arriving-sha256). */
  arrivingSha256?: string;
}

/** Where the command writes, and how it builds a mux from `--mux-json`. */
export interface FlashCliContext {
  /** Progress lines go here. */
  stdout: { write(text: string): unknown };
  /** Steps, warnings and the final line go here. */
  stderr: { write(text: string): unknown };
  /** Aborts the flash (the command wires SIGTERM/SIGINT to it). */
  signal?: AbortSignal;
  /** Builds a mux from the parsed `--mux-json` config; without it only `none` is accepted. */
  muxFromConfig?: (config: unknown) => StorageMux;
}

/** The mux of a medium that is always on the host (a virtual DUT's disk file, a bench card reader). */
const NO_MUX: StorageMux = {
  toHost: async () => {},
  toDut: async () => {},
  status: async () => 'host',
};

class UsageError extends Error {}

function muxFrom(json: string, context: FlashCliContext): StorageMux {
  if (json === 'none') return NO_MUX;
  let config: unknown;
  try {
    config = readConfigArg('--mux-json', json);
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (nor "none")`);
  }
  if (context.muxFromConfig === undefined) {
    throw new UsageError('--mux-json: storage mux drivers are not available here; use --mux-json none');
  }
  try {
    return context.muxFromConfig(config);
  } catch (err) {
    if (err instanceof JigletError && err.code === 'JIGLET_E_INVALID_ARGUMENT')
      throw new UsageError(err.message);
    throw err;
  }
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, '; ');

/** Runs one flash for parsed arguments and returns the process exit code. */
export async function runFlashCli(args: FlashCliArgs, context: FlashCliContext): Promise<number> {
  const say = (text: string): void => {
    context.stderr.write(`jig-driver flash: ${oneLine(text)}\n`);
  };
  // The coded line for readers, then the same words for people, last.
  const fail = (err: unknown): void => {
    const failure = failureOf(err instanceof UsageError ? invalidArgument(err.message) : err);
    context.stderr.write(driverEventLine({ kind: 'failed', failure }));
    say(failure.message);
  };
  let mux: StorageMux;
  let arriving: ArrivingImage | undefined;
  try {
    arriving = arrivingOf(args);
    mux = muxFrom(args.muxJson, context);
  } catch (err) {
    fail(err);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
  try {
    const summary = await flashDut({
      image: args.image,
      arriving,
      bmap: args.bmap,
      mux,
      // Without a mux the medium is already attached: a missing device is the safety check's to report.
      resolveDevice: (signal) =>
        mux === NO_MUX
          ? Promise.resolve(args.device)
          : waitForPathWithin(args.device, args.deviceTimeoutMs, signal).then(() => args.device),
      verify: args.verify,
      allowFile: args.allowFile,
      skipZeroBlocks: args.skipZeros,
      onProgress: (progress) => context.stdout.write(driverEventLine({ kind: 'flash', progress })),
      onStep: (step) => context.stderr.write(driverEventLine({ kind: 'step', step })),
      onWarning: (message) => say(message),
      signal: context.signal,
    });
    say(
      `wrote ${summary.bytesWritten} of ${summary.imageBytes} bytes to ${summary.device} ` +
        `(${summary.bytesSkipped} skipped) in ${summary.seconds} s, ` +
        `${summary.verified ? 'verified' : 'NOT verified'}, sha256 ${summary.sha256}`,
    );
    return 0;
  } catch (err) {
    fail(err);
    const stoppedBy = context.signal?.aborted
      ? (context.signal.reason as { signal?: string }).signal
      : undefined;
    return stoppedBy === 'SIGTERM' || stoppedBy === 'SIGINT' ? 128 + SIGNAL_NUMBERS[stoppedBy] : EXIT_FAILURE;
  }
}

/** Why a flash stopped early, as the abort reason. */
class StoppedError extends JigletError {
  constructor(readonly signal: 'SIGTERM' | 'SIGINT') {
    super('JIGLET_E_UNAVAILABLE', `stopped by ${signal}; the medium may hold a partial image`);
  }
}

function builder(y: Argv) {
  return y
    .option('image', { type: 'string', demandOption: true, describe: 'image: raw, .gz, .xz or .zst' })
    .option('bmap', { type: 'string', describe: 'bmaptool block map of the image' })
    .option('verify', { type: 'boolean', default: true, describe: 'read back and compare (--no-verify)' })
    .option('device', { type: 'string', demandOption: true, describe: 'block device of the medium' })
    .option('mux-json', {
      type: 'string',
      demandOption: true,
      describe: 'storage mux config as JSON, or none',
    })
    .option('allow-file', { type: 'boolean', default: false, describe: 'allow a regular file as --device' })
    .option('skip-zeros', {
      type: 'boolean',
      default: true,
      describe: 'skip all-zero 4 KiB blocks (no bmap)',
    })
    .option('device-timeout-ms', {
      type: 'number',
      default: DEFAULT_DEVICE_TIMEOUT_MS,
      describe: 'wait this long for --device to appear after switching the mux',
    })
    .option('arriving-size', {
      type: 'number',
      describe: 'the image is still being written: read it as it grows to this many bytes',
    })
    .option('arriving-sha256', {
      type: 'string',
      describe: 'with --arriving-size: the SHA-256 its bytes must have',
    });
}

/** The --arriving-* pair, checked: both or neither. */
function arrivingOf(argv: { arrivingSize?: number; arrivingSha256?: string }): ArrivingImage | undefined {
  const { arrivingSize: size, arrivingSha256: sha256 } = argv;
  if (size === undefined && sha256 === undefined) return undefined;
  if (size === undefined || !Number.isSafeInteger(size) || size <= 0)
    throw new UsageError('--arriving-size must be the image size in bytes (with --arriving-sha256)');
  if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256))
    throw new UsageError('--arriving-sha256 must be 64 lower-case hex digits (with --arriving-size)');
  return { size, sha256 };
}

/** The options yargs parses for `flash` (kebab-case keys; the handler sees them camelCased too). */
type FlashArgv = ReturnType<typeof builder> extends Argv<infer U> ? U : never;

/** The `flash` command; `muxFromConfig` turns `--mux-json` into a mux (else only `none` works). */
export function createFlashCommand(
  options: { muxFromConfig?: (config: unknown) => StorageMux } = {},
): CommandModule<object, FlashArgv> {
  return {
    command: 'flash',
    describe: "flash a DUT's boot medium: mux to host, write, verify, mux back to the DUT",
    builder,
    handler: async (argv) => {
      const controller = new AbortController();
      const stop = (signal: 'SIGTERM' | 'SIGINT') => () => controller.abort(new StoppedError(signal));
      const onTerm = stop('SIGTERM');
      const onInt = stop('SIGINT');
      process.once('SIGTERM', onTerm);
      process.once('SIGINT', onInt);
      try {
        process.exitCode = await runFlashCli(
          {
            image: argv.image,
            arrivingSize: argv.arrivingSize,
            arrivingSha256: argv.arrivingSha256,
            bmap: argv.bmap,
            verify: argv.verify,
            device: argv.device,
            muxJson: argv.muxJson,
            allowFile: argv.allowFile,
            skipZeros: argv.skipZeros,
            deviceTimeoutMs: argv.deviceTimeoutMs,
          },
          { stdout: process.stdout, stderr: process.stderr, signal: controller.signal, ...options },
        );
      } finally {
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
      }
    },
  };
}

/** `jig-driver flash` with only `--mux-json none` (register this one until mux drivers are wired). */
export const flashCommand = createFlashCommand();
