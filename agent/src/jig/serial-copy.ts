/**
 * Copying files to and from a DUT over its serial console, for boards without a network: base64
 * through the DUT's shell (busybox and coreutils both have `base64` and `sha256sum`), each step an
 * exec of its own (so the console writer is taken per step, and viewers see it all). A file sent
 * is typed as the stdin of `base64 -d` in pieces that fit the exec's stdin, appended to a hidden
 * temporary file, checked with `sha256sum`, then renamed over the target; a file fetched is read
 * with one `base64` and checked the same way. Console speed makes this slow, so copies over
 * serial are limited to MAX_SERIAL_COPY_BYTES.
 */
import { createHash } from 'node:crypto';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import {
  type CopyResult,
  copyFailed,
  parseSha256Output,
  remoteSha256Command,
  temporaryPathFor,
} from './copy-paths.js';
import type { DutShells } from './dut-exec.js';
import type { DutRuntime } from './dut-runtime.js';
import { newNonce, shellQuote } from './exec-protocol.js';

/** Largest file a serial copy moves, either way. */
export const MAX_SERIAL_COPY_BYTES = 1024 * 1024;
/** Raw bytes per `base64 -d` exec: 76-character lines of base64 stay under the exec's 64 KiB of stdin. */
const PIECE_BYTES = 45 * 1024;

/** Who runs the copy's commands, on which DUT's console, until when. */
export interface SerialCopyContext {
  shells: DutShells;
  dut: DutRuntime;
  who: Identity;
  lease: string | undefined;
  signal: AbortSignal;
  /** When the whole copy must be done (ms since the epoch). */
  deadline: number;
}

/** Runs one command on the console; returns its output, failing with its output if it exits non-zero. */
async function run(ctx: SerialCopyContext, what: string, command: string, stdin?: Buffer): Promise<Buffer> {
  const timeoutMs = Math.max(1, ctx.deadline - Date.now());
  const result = await ctx.shells.exec(
    ctx.dut,
    ctx.who,
    ctx.lease,
    {
      command,
      timeoutMs,
      interactive: stdin !== undefined,
      stdin: stdin ?? Buffer.alloc(0),
      keepKernelLines: false,
    },
    ctx.signal,
  );
  if (result.timedOut)
    throw new JigletError(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `the copy over ${ctx.dut.dut.name}'s console ran past its timeout while ${what}`,
    );
  if (result.exitCode !== 0)
    throw copyFailed(
      `${what} on ${ctx.dut.dut.name} failed (exit ${result.exitCode}): ${tail(result.stdout)}`,
    );
  return result.stdout;
}

async function sha256On(ctx: SerialCopyContext, path: string): Promise<string> {
  const timeoutMs = Math.max(1, ctx.deadline - Date.now());
  const result = await ctx.shells.exec(
    ctx.dut,
    ctx.who,
    ctx.lease,
    {
      command: remoteSha256Command(path),
      timeoutMs,
      interactive: false,
      stdin: Buffer.alloc(0),
      keepKernelLines: false,
    },
    ctx.signal,
  );
  return parseSha256Output(ctx.dut.dut.name, path, result.exitCode, result.stdout.toString('utf8'));
}

/** Base64 in 76-character lines, as `base64` writes it and `base64 -d` reads it. */
function base64Lines(bytes: Buffer): Buffer {
  const text = bytes.toString('base64');
  const lines: string[] = [];
  for (let at = 0; at < text.length; at += 76) lines.push(text.slice(at, at + 76));
  return Buffer.from(`${lines.join('\n')}\n`);
}

/** Writes `data` to `path` on the DUT through its console. */
export async function copyToDutOverSerial(
  ctx: SerialCopyContext,
  path: string,
  mode: number,
  data: Buffer,
): Promise<CopyResult> {
  checkSize(data.length);
  const temporary = temporaryPathFor(path, newNonce());
  const quoted = shellQuote(temporary);
  try {
    await run(ctx, `creating ${temporary}`, `: > ${quoted} && chmod ${mode.toString(8)} ${quoted}`);
    for (let at = 0; at < data.length; at += PIECE_BYTES) {
      const piece = data.subarray(at, at + PIECE_BYTES);
      await run(
        ctx,
        `writing bytes ${at}-${at + piece.length}`,
        `base64 -d >> ${quoted}`,
        base64Lines(piece),
      );
    }
    const sent = createHash('sha256').update(data).digest('hex');
    const onDut = await sha256On(ctx, temporary);
    if (onDut !== sent)
      throw new JigletError(
        'JIGLET_E_DATA_LOSS',
        `the copy of ${path} on ${ctx.dut.dut.name} has SHA-256 ${onDut}, the bytes sent ${sent} (console noise?): it was removed; copy it again`,
      );
    await run(ctx, `renaming the copy to ${path}`, `mv -f ${quoted} ${shellQuote(path)}`);
    return { bytes: data.length, sha256: onDut };
  } catch (error) {
    if (!ctx.signal.aborted)
      await run(ctx, 'removing the partial copy', `rm -f ${quoted}`).catch(() => undefined);
    throw error;
  }
}

/** Reads `path` from the DUT through its console. */
export async function copyFromDutOverSerial(
  ctx: SerialCopyContext,
  path: string,
): Promise<{ data: Buffer } & CopyResult> {
  const quoted = shellQuote(path);
  const onDut = await sha256On(ctx, path);
  const size = Number.parseInt(
    (await run(ctx, `measuring ${path}`, `wc -c < ${quoted}`)).toString('utf8').trim(),
    10,
  );
  if (!Number.isSafeInteger(size))
    throw copyFailed(`could not read the size of ${path} on ${ctx.dut.dut.name}`);
  checkSize(size);
  const text = (await run(ctx, `reading ${path}`, `base64 ${quoted}`)).toString('latin1');
  const data = Buffer.from(text.replace(/\s+/g, ''), 'base64');
  const got = createHash('sha256').update(data).digest('hex');
  if (got !== onDut)
    throw new JigletError(
      'JIGLET_E_DATA_LOSS',
      `${path} on ${ctx.dut.dut.name} has SHA-256 ${onDut}, the bytes read over the console ${got} (console noise, or the file changed): copy it again`,
    );
  return { data, bytes: data.length, sha256: onDut };
}

function checkSize(bytes: number): void {
  if (bytes > MAX_SERIAL_COPY_BYTES)
    throw invalidArgument(
      `${bytes} bytes is more than a copy over serial moves (${MAX_SERIAL_COPY_BYTES}): give the DUT an ssh: section and copy over SSH`,
    );
}

function tail(output: Buffer): string {
  return output.toString('utf8').trim().split('\n').slice(-3).join(' | ').slice(0, 500);
}
