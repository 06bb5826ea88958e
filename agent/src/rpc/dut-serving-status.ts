/**
 * The gRPC health service speaks for each DUT: `jiglet.dut.<name>` is SERVING while the DUT is
 * good and NOT_SERVING while it is bad or in maintenance, so a load balancer or a fleet monitor
 * that already speaks grpc.health.v1 sees a quarantined DUT without learning our API.
 * Maintenance counts as not serving: the DUT takes no new claims, which is what a client asks.
 */
import type { HealthImplementation, ServingStatus } from 'grpc-health-check';
import type { AgentEvents } from '../events/agent-events.js';
import type { JigRuntime } from '../jig/jig-runtime.js';

/** Health service name of a DUT. */
export function dutServiceName(dut: string): string {
  return `jiglet.dut.${dut}`;
}

/** What a health state means to a health-check client. */
export function servingStatusOf(state: string): ServingStatus {
  return state === 'good' ? 'SERVING' : 'NOT_SERVING';
}

/**
 * Sets every DUT's status now and follows health changes; the returned function stops following
 * and marks every DUT NOT_SERVING (the agent is stopping: it serves none of them any more).
 */
export function reflectDutHealth(opts: {
  jig: JigRuntime;
  events: AgentEvents;
  health: HealthImplementation;
}): () => void {
  const { jig, events, health } = opts;
  const names = jig.list().map((d) => d.dut.name);
  for (const name of names) {
    health.setStatus(dutServiceName(name), servingStatusOf(jig.health(name).record.state));
  }
  const unsubscribe = events.subscribe((event) => {
    if (event.kind === 'health') health.setStatus(dutServiceName(event.dut), servingStatusOf(event.state));
  });
  return () => {
    unsubscribe();
    for (const name of names) health.setStatus(dutServiceName(name), 'NOT_SERVING');
  };
}
