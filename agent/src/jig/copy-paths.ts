/**
 * What copies to and from a DUT share, over SSH and over serial: the path rules, the temporary
 * name a file is written under until its checksum matches, and reading the DUT's `sha256sum`.
 */
import { posix } from 'node:path';
import {
  failedPrecondition,
  invalidArgument,
  type JigletError,
  notFound,
} from '../../../protocol/src/errors.js';
import { shellQuote } from './exec-protocol.js';

/** What a finished copy moved. */
export interface CopyResult {
  bytes: number;
  /** The SHA-256 (hex) of the file as the DUT computed it. */
  sha256: string;
}

/** Longest path on the DUT a copy names (Linux's PATH_MAX). */
const MAX_PATH = 4095;

/** Checks a path on the DUT: absolute, one line, not a folder. */
export function checkDutPath(path: string): string {
  if (!path.startsWith('/'))
    throw invalidArgument(
      `the path on the DUT must be absolute (it was "${path.slice(0, 200)}"), e.g. D:/tmp/file`,
    );
  if (path.length > MAX_PATH) throw invalidArgument(`the path on the DUT is longer than ${MAX_PATH} bytes`);
  if (/[\0\r\n]/.test(path)) throw invalidArgument('the path on the DUT may not hold a NUL or a line break');
  if (path.endsWith('/')) throw invalidArgument(`${path} names a folder: name the file, e.g. ${path}file`);
  return path;
}

/** Where a file is written until its checksum matches: a hidden name beside its target. */
export function temporaryPathFor(path: string, nonce: string): string {
  return posix.join(posix.dirname(path), `.${posix.basename(path)}.jiglet-${nonce}`);
}

/** The command that prints a file's SHA-256 on the DUT. */
export function remoteSha256Command(path: string): string {
  return `sha256sum ${shellQuote(path)}`;
}

/** The hash in `sha256sum`'s output, or the error its failure means. */
export function parseSha256Output(dut: string, path: string, exitCode: number, output: string): string {
  const hex = /^([0-9a-f]{64})\s/m.exec(output);
  if (exitCode === 0 && hex) return hex[1]!;
  const said = output.trim().slice(0, 300);
  if (/no such file/i.test(said)) throw notFound(`${path} does not exist on ${dut}`);
  if (/is a directory/i.test(said)) throw invalidArgument(`${path} is a folder on ${dut}: name a file`);
  if (/not found/i.test(said) && /sha256sum/.test(said))
    throw failedPrecondition(
      `${dut} has no sha256sum (coreutils or busybox): jiglet checks every copy with it`,
    );
  throw copyFailed(`sha256sum of ${path} on ${dut} failed (exit ${exitCode}): ${said}`);
}

/** A copy step that failed on the DUT (no space, no such folder, a read-only file system). */
export function copyFailed(message: string): JigletError {
  return failedPrecondition(message);
}
