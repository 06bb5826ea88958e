/**
 * The fencing check every mutating call on a DUT goes through (power switching, a job with the
 * DUT, a console, a flash). A lease is not a bearer token (issue 11): the id in `jiglet-lease` is
 * honoured only for the identity that holds it. Another identity presenting it — an admin too,
 * who ends the lease first instead — is PERMISSION_DENIED naming the holder; a stale, foreign or
 * missing lease is FAILED_PRECONDITION saying what is wrong, so a holder that thinks it still
 * holds a lease hears that it does not.
 */
import { failedPrecondition, permissionDenied } from '../../../protocol/src/errors.js';
import { can } from '../auth/permissions.js';
import type { HeldLeases, Lease, LeaseCaller } from './lease-state.js';

/**
 * Passes when `dut` is not leased (undefined), or when `leaseId` is its current lease and
 * `caller` holds it (that lease, so what the call starts can be bound to it); throws otherwise.
 */
export function checkFence(
  leases: HeldLeases,
  dut: string,
  leaseId: string | undefined,
  caller: LeaseCaller,
): Lease | undefined {
  const lease = leases.leaseOn(dut);
  if (leaseId === undefined) {
    if (!lease) return undefined;
    if (lease.holder === caller.name)
      throw failedPrecondition(
        `${dut} is leased by you (${caller.name}): the call must carry its lease (--lease ID, or JIGLET_LEASE)`,
      );
    throw failedPrecondition(
      `${dut} is leased by ${lease.holder} until ${clock(lease.expiresAt)}; ${whatNow(lease, caller)}`,
    );
  }
  const sent = leases.byId(leaseId);
  if (sent && sent.holder !== caller.name && !isAgentHolder(sent.holder)) {
    // Named for the DUT called when it is leased, so the refusal says whose turn it is.
    const shown = lease ?? sent;
    throw permissionDenied(
      `${shown.dut} is leased by ${shown.holder} until ${clock(shown.expiresAt)}; a lease works only for its holder, not for ${caller.name}: ${whatNow(shown, caller)}`,
    );
  }
  if (sent && sent.dut !== dut) throw failedPrecondition(`lease ${leaseId} is for ${sent.dut}, not ${dut}`);
  if (sent) return sent;
  throw failedPrecondition(
    `lease ${leaseId} is no longer valid for ${dut} (${leases.endOf(leaseId) ?? 'expired, released or superseded'})${lease ? `; the current holder is ${lease.holder}` : ''}`,
  );
}

/**
 * The agent's own leases (a health check's, held as `@jiglet-health`) are the one exception: the
 * check's jigctl calls come with whatever certificate the check was configured with, so its lease
 * is honoured for the identity that sends it. Its id is handed only to the check's job (in its
 * environment, which only admins can read) and hidden from non-admins everywhere else, and the
 * lease lives only while the check runs. A check's jigctl needs no certificate since the local
 * endpoint (it acts as the holder there); this stays for checks still configured with one. No
 * certificate can carry the name: a CN has no '@'.
 */
export function isAgentHolder(holder: string): boolean {
  return holder.startsWith('@');
}

/** What a refused caller can do about a lease held by someone else. */
function whatNow(lease: Lease, caller: LeaseCaller): string {
  // An admin may see the id (it is the one who revokes), so the way out is spelled in full.
  if (can(caller.role, 'leases.revoke'))
    return `as an admin, end it first with "jigctl release ${lease.id}", then claim ${lease.dut}`;
  return `wait for it (jigctl claim --dut ${lease.dut} --wait 10m) or ask an admin to release it`;
}

/** A time of day for people, in UTC (e.g. 12:03:04Z): leases last at most a day. */
function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 19)}Z`;
}
