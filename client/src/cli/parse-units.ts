/** Parsing of the human units jigctl accepts: sizes (256M), CPU shares (0.5), durations (90s, 10m). */
import { invalidArgument } from '../../../protocol/src/errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/** "256M", "1.5G", "512Ki", "1048576" → bytes (binary multiples, as cgroups and docker use). */
export function parseSize(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b?)$/i.exec(text.trim());
  if (!m) throw invalidArgument(`${flag} "${text}" is not a size (examples: 256M, 1G, 65536)`);
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
}

/** "0.5" CPUs → 500 thousandths of a CPU. */
export function parseCpus(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw invalidArgument(`${flag} "${text}" is not a positive number of CPUs`);
  return Math.round(n * 1000);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000 };

/** "30" or "30s", "10m", "1.5h", "250ms" → milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|)$/.exec(text.trim());
  if (!m) throw invalidArgument(`${flag} "${text}" is not a duration (examples: 30, 90s, 10m, 1h)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

/** "K=V" pairs → an object; refuses entries without "=", naming the flag and the expected form. */
export function parsePairs(
  flag: string,
  entries: readonly string[],
  form = 'NAME=value',
): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const e of entries) {
    const i = e.indexOf('=');
    if (i <= 0) throw invalidArgument(`${flag} "${e}" must look like ${form}`);
    pairs[e.slice(0, i)] = e.slice(i + 1);
  }
  return pairs;
}

/** `--env` pairs → an object. */
export function parseEnv(entries: readonly string[]): Record<string, string> {
  return parsePairs('--env', entries);
}
