/**
 * A duration written as a user types it on the command line (`--ttl 10m`, `--timeout 90s`), so a
 * limit the agent states ("between 1s and 24h") can be typed back as it is.
 */

/** 86_400_000 → "24h", 600_000 → "10m", 90_000 → "90s", 250 → "250ms", 0 → "0s". */
export function durationText(ms: number): string {
  if (ms === 0) return '0s';
  if (!Number.isFinite(ms)) return String(ms);
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
