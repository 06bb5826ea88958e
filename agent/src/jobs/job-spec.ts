/**
 * Validation of what a client asks to run. Everything a client sends is checked here, once,
 * and turned into plain numbers and strings, so the supervisor never sees wire types.
 */
import { availableParallelism, totalmem } from 'node:os';
import { isAbsolute } from 'node:path';
import type { JobSpec as WireJobSpec } from '../../../protocol/gen/jiglet/v1/jobs.js';
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
    throw invalidArgument(`spec.cwd "${spec.cwd}" must be an absolute path`);
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
    timeoutMs: boundedNumber('spec.timeout_ms', spec.timeoutMs, MAX_TIMEOUT_MS),
    stdin: spec.stdin,
  };
}

function validateLimits(limits: WireJobSpec['limits']): JobLimits {
  const memoryBytes = boundedNumber('spec.limits.memory_bytes', limits?.memoryBytes ?? 0n, totalmem());
  if (memoryBytes !== 0 && memoryBytes < MIN_MEMORY_BYTES) {
    throw invalidArgument(`spec.limits.memory_bytes ${memoryBytes} is below the minimum of 4 MiB`);
  }
  const cpuMillis = limits?.cpuMillis ?? 0;
  const maxCpu = availableParallelism() * 1000;
  if (cpuMillis > maxCpu) {
    throw invalidArgument(`spec.limits.cpu_millis ${cpuMillis} exceeds this host's ${maxCpu} (all its CPUs)`);
  }
  if (cpuMillis !== 0 && cpuMillis < 10) {
    throw invalidArgument(`spec.limits.cpu_millis ${cpuMillis} is below the minimum of 10 (1% of a CPU)`);
  }
  const pidsMax = limits?.pidsMax ?? 0;
  if (pidsMax > MAX_PIDS) throw invalidArgument(`spec.limits.pids_max ${pidsMax} exceeds ${MAX_PIDS}`);
  return { memoryBytes, cpuMillis, pidsMax };
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
