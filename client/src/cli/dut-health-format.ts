/** Human and JSON renderings of a DUT's health for `jigctl jig`, `jigctl dut state` and `jigctl dut check`. */
import { type Dut, DutHealth } from '../jig-client.js';

const HEALTH_NAMES: Partial<Record<DutHealth, string>> = {
  [DutHealth.DUT_HEALTH_GOOD]: 'good',
  [DutHealth.DUT_HEALTH_BAD]: 'bad',
  [DutHealth.DUT_HEALTH_MAINTENANCE]: 'maintenance',
};

/** good, bad, maintenance (or unknown from an agent that predates health). */
export function healthName(d: Dut): string {
  return HEALTH_NAMES[d.health] ?? 'unknown';
}

/** A plain-JSON view of a DUT's health. */
export function healthJson(d: Dut): Record<string, unknown> {
  return {
    state: healthName(d),
    reason: d.healthReason || undefined,
    changed: d.healthChanged?.toISOString(),
    changedBy: d.healthChangedBy || undefined,
    hasCheck: d.hasHealthCheck,
    lastCheck: d.lastHealthCheck?.toISOString(),
    lastCheckJobId: d.healthCheckJob || undefined,
    lastCheckPassed: d.lastHealthCheck ? d.healthCheckPassed : undefined,
  };
}

/** One line on a DUT's health: "rpi4-a: bad (by @jiglet-health at …): the health check exited with code 3 (job …)". */
export function healthLine(d: Dut): string {
  const who = d.healthChangedBy ? ` by ${d.healthChangedBy}` : '';
  const when = d.healthChanged ? ` at ${d.healthChanged.toISOString()}` : '';
  return `${d.name}: ${healthName(d)}${who || when ? ` (set${who}${when})` : ''}${d.healthReason ? `: ${d.healthReason}` : ''}`;
}

/** The health lines of the DUTs that are out of service, for below the `jigctl jig` table. */
export function outOfServiceLines(duts: readonly Dut[]): string[] {
  return duts.filter((d) => d.health !== DutHealth.DUT_HEALTH_GOOD).map(healthLine);
}
