/**
 * jiglet.v1.LeaseService over the lease manager. A claim by labels takes the first free DUT with
 * all of them; when none is free and the claim may wait, it queues on the matching DUT with the
 * shortest line (a simplification: it does not move to another DUT that frees up first).
 */
import type { Logger } from 'pino';
import type { LeaseServiceServer, Lease as WireLease } from '../../../protocol/gen/jiglet/v1/leases.js';
import { invalidArgument, notFound } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import { can } from '../auth/permissions.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { Lease, LeaseManager } from '../leases/lease-manager.js';
import { unary } from './respond.js';

/** The wire form of a lease. */
export function toWireLease(lease: Lease): WireLease {
  return {
    id: lease.id,
    dut: lease.dut,
    holder: lease.holder,
    fencingToken: BigInt(lease.token),
    expires: new Date(lease.expiresAt),
    maxExpires: new Date(lease.maxExpiresAt),
    ttlMs: lease.ttlMs,
  };
}

/** Builds the LeaseService handlers. */
export function leaseService(jig: JigRuntime, leases: LeaseManager, log: Logger): LeaseServiceServer {
  return {
    claim: unary(log, 'Claim', async (call) => {
      const who = identityOf(call);
      const { dut, labels, ttlMs, waitMs, priority } = call.request;
      const byLabels = Object.keys(labels).length > 0;
      if ((dut === '') === !byLabels)
        throw invalidArgument('claim a DUT by name (--dut) or by labels (--labels), not both');
      let target: string;
      if (!byLabels) target = jig.get(dut).dut.name;
      else {
        const matching = jig.list(labels).map((d) => d.dut.name);
        if (matching.length === 0) {
          throw notFound(
            `no DUT has the labels ${Object.entries(labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(',')}`,
          );
        }
        const held = new Set(leases.list().map((l) => l.dut));
        target =
          matching.find((name) => !held.has(name)) ??
          [...matching].sort((a, b) => leases.queue(a).waiting - leases.queue(b).waiting)[0]!;
      }
      const lease = await leases.claim({ dut: target, holder: who.name, ttlMs, waitMs, priority });
      return { lease: toWireLease(lease) };
    }),
    renew: unary(log, 'Renew', async (call) => ({
      lease: toWireLease(leases.renew(call.request.leaseId, identityOf(call).name)),
    })),
    release: unary(log, 'Release', async (call) => {
      const who = identityOf(call);
      leases.release(call.request.leaseId, who.name, { revoke: can(who.role, 'leases.revoke') });
      return {};
    }),
    listLeases: unary(log, 'ListLeases', async () => ({ leases: leases.list().map(toWireLease) })),
  };
}
