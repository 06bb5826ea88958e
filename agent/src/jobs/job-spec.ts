/**
 * Validation of what a client asks to run. Everything a client sends is checked here, once,
 * and turned into plain numbers and strings, so the supervisor never sees wire types.
 */
import { availableParallelism, totalmem } from 'node:os';
import { isAbsolute } from 'node:path';
import type { JobSpec as WireJobSpec } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { durationText } from '../../../protocol/src/duration-text.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { JobLimits } from './containment.js';

/** Most arguments a job may have. */
const MAX_ARGS = 4096;
/** Most bytes of command, arguments and environment together (well under the kernel's ARG_MAX). */
const MAX_ARGV_ENV_BYTES = 256 * 1024;
/** Smallest memory limit that still lets a shell start. */
const MIN_MEMORY_BYTES = 4 * 1024 * 1024;
/** Longest job timeout: a week. */
const MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000;
/** Largest pids.max the kernel accepts. */
const MAX_PIDS = 4_194_304;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DUT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A validated job specification. */
export interface JobSpecInput {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  dut: string;
  limits: JobLimits;
  timeoutMs: number;
  stdin: boolean;
}

/** Checks a StartJob spec and converts it; throws JIGLET_E_INVALID_ARGUMENT naming the field. */
export function validateJobSpec(spec: WireJobSpec | undefined): JobSpecInput {
  if (!spec) throw invalidArgument('spec is required');
  const command = spec.command.trim() === '' ? '' : spec.command;
  if (command === '') throw invalidArgument('spec.command is empty: name the program to run');
  if (spec.args.length > MAX_ARGS) {
    throw invalidArgument(`spec.args has ${spec.args.length} arguments; at most ${MAX_ARGS} are allowed`);
  }
  noNul('spec.command', command);
  for (const [i, a] of spec.args.entries()) noNul(`spec.args[${i}]`, a);
  let bytes = Buffer.byteLength(command);
  for (const a of spec.args) bytes += Buffer.byteLength(a) + 1;
  for (const [k, v] of Object.entries(spec.env)) {
    if (!ENV_NAME.test(k))
      throw invalidArgument(`spec.env: "${k.slice(0, 64)}" is not a valid variable name`);
    noNul(`spec.env.${k}`, v);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 2;
  }
  if (bytes > MAX_ARGV_ENV_BYTES) {
    throw invalidArgument(
      `command, arguments and environment total ${bytes} bytes; at most ${MAX_ARGV_ENV_BYTES} are allowed`,
    );
  }
  if (spec.cwd !== '' && !isAbsolute(spec.cwd)) {
    throw invalidArgument(
      `the working directory must be an absolute path on the jig host; got "${spec.cwd}"`,
    );
  }
  if (spec.dut !== '' && !DUT_NAME.test(spec.dut)) {
    throw invalidArgument(`spec.dut "${spec.dut.slice(0, 64)}" is not a valid DUT name`);
  }
  return {
    command,
    args: [...spec.args],
    env: { ...spec.env },
    cwd: spec.cwd,
    dut: spec.dut,
    limits: validateLimits(spec.limits),
    timeoutMs: boundedDuration('the job timeout', spec.timeoutMs, MAX_TIMEOUT_MS),
    stdin: spec.stdin,
  };
}

function validateLimits(limits: WireJobSpec['limits']): JobLimits {
  const memory = limits?.memoryBytes ?? 0n;
  const most = totalmem();
  if (memory > BigInt(most) || (memory !== 0n && memory < BigInt(MIN_MEMORY_BYTES))) {
    throw invalidArgument(
      `the memory limit must be between ${mib(MIN_MEMORY_BYTES)} and ${Math.floor(most / (1024 * 1024))}M, this host's memory; got ${mib(Number(memory))}`,
    );
  }
  const memoryBytes = Number(memory);
  const cpuMillis = limits?.cpuMillis ?? 0;
  const maxCpu = availableParallelism() * 1000;
  if (cpuMillis !== 0 && (cpuMillis < 10 || cpuMillis > maxCpu)) {
    throw invalidArgument(
      `the CPU limit must be between 0.01 and ${maxCpu / 1000} CPUs, all of this host's; got ${cpuMillis / 1000}`,
    );
  }
  const pidsMax = limits?.pidsMax ?? 0;
  if (pidsMax > MAX_PIDS)
    throw invalidArgument(`the process limit must be at most ${MAX_PIDS}; got ${pidsMax}`);
  return { memoryBytes, cpuMillis, pidsMax };
}

/** A size as `--memory` takes it: "4M", "1536M" ("1K" below a MiB). */
function mib(bytes: number): string {
  if (bytes > 0 && bytes < 1024 * 1024) return `${Math.ceil(bytes / 1024)}K`;
  const m = bytes / (1024 * 1024);
  return `${Number.isInteger(m) ? m : m.toFixed(1)}M`;
}

/**
 * A wire duration in milliseconds, refused beyond `maxMs` in the units a person types
 * ("the job timeout must be between 0s and 168h; got 720h"); `what` names it as users know it.
 */
export function boundedDuration(what: string, value: bigint, maxMs: number): number {
  if (value < 0n || value > BigInt(maxMs)) {
    throw invalidArgument(
      `${what} must be between 0s and ${durationText(maxMs)}; got ${durationText(Number(value))}`,
    );
  }
  return Number(value);
}

/** Converts a wire uint64 to a number, refusing values above `max`. */
export function boundedNumber(field: string, value: bigint, max: number): number {
  if (value < 0n || value > BigInt(max)) {
    throw invalidArgument(`${field} ${value} is out of range (0 to ${max})`);
  }
  return Number(value);
}

function noNul(field: string, value: string): void {
  if (value.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
}
