/**
 * jiglet.v1.LeaseService over the lease manager. A claim by labels takes the first free, healthy
 * DUT with all of them; when none is and the claim may wait, it waits for whichever frees first.
 */
import type { Logger } from 'pino';
import {
  WatchLeasesResponse_Kind as Kind,
  type LeaseServiceServer,
  type WatchLeasesResponse,
  type Lease as WireLease,
} from '../../../protocol/gen/jiglet/v1/leases.js';
import { invalidArgument, JigletError, notFound } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { Identity } from '../auth/identity.js';
import { can, seesLeaseId } from '../auth/permissions.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { Lease, LeaseChange, LeaseManager } from '../leases/lease-manager.js';
import { abortWhenClientGone, failStream, unary } from './respond.js';

/**
 * Events a watcher may fall behind by before it is cut off: lease changes are rare, so a watcher
 * this far behind is stuck, and holding more for it would only grow the agent's memory.
 */
const WATCH_BACKLOG = 1000;

const ENDED_KIND = { released: Kind.KIND_RELEASED, expired: Kind.KIND_EXPIRED, revoked: Kind.KIND_REVOKED };

function toWireChange(change: LeaseChange, who: Identity): WatchLeasesResponse {
  const at = new Date();
  if (change.kind === 'waiting')
    return { kind: Kind.KIND_WAITING, dut: change.dut, waiting: change.waiting, at };
  const kind =
    change.kind === 'ended'
      ? ENDED_KIND[change.reason]
      : change.kind === 'granted'
        ? Kind.KIND_GRANTED
        : Kind.KIND_RENEWED;
  return { kind, lease: toWireLease(change.lease, who), dut: change.lease.dut, waiting: 0, at };
}

function changeDut(change: LeaseChange): string {
  return change.kind === 'waiting' ? change.dut : change.lease.dut;
}

/** The wire form of a lease as `who` may see it: the id only for its holder and admins. */
export function toWireLease(lease: Lease, who: Identity): WireLease {
  return {
    id: seesLeaseId(who, lease.holder) ? lease.id : '',
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
      let candidates: string[];
      if (!byLabels) candidates = [jig.get(dut).dut.name];
      else {
        candidates = jig.list(labels).map((d) => d.dut.name);
        if (candidates.length === 0) {
          throw notFound(
            `no DUT has the labels ${Object.entries(labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(',')}`,
          );
        }
      }
      const lease = await leases.claim({ duts: candidates, holder: who.name, ttlMs, waitMs, priority });
      return { lease: toWireLease(lease, who) };
    }),
    renew: unary(log, 'Renew', async (call) => {
      const who = identityOf(call);
      return { lease: toWireLease(leases.renew(call.request.leaseId, who.name), who) };
    }),
    release: unary(log, 'Release', async (call) => {
      const who = identityOf(call);
      leases.release(call.request.leaseId, who.name, { revoke: can(who.role, 'leases.revoke') });
      return {};
    }),
    listLeases: unary(log, 'ListLeases', async (call) => {
      const who = identityOf(call);
      return { leases: leases.list().map((l) => toWireLease(l, who)) };
    }),
    watchLeases(call) {
      const { dut } = call.request;
      let who: Identity;
      try {
        who = identityOf(call);
        if (dut !== '') jig.get(dut);
      } catch (err) {
        failStream(log, 'WatchLeases', call, err);
        return;
      }
      const backlog: WatchLeasesResponse[] = [];
      let blocked = false;
      const send = (msg: WatchLeasesResponse): void => {
        if (blocked) {
          backlog.push(msg);
          if (backlog.length > WATCH_BACKLOG) {
            stop();
            failStream(
              log,
              'WatchLeases',
              call,
              new JigletError(
                'JIGLET_E_RESOURCE_EXHAUSTED',
                `the watcher fell ${WATCH_BACKLOG} events behind; watch again to resume from a fresh snapshot`,
              ),
            );
          }
          return;
        }
        blocked = !call.write(msg);
      };
      const onDrain = (): void => {
        blocked = false;
        while (!blocked && backlog.length > 0) blocked = !call.write(backlog.shift()!);
      };
      const onChange = (change: LeaseChange): void => {
        if (dut === '' || changeDut(change) === dut) send(toWireChange(change, who));
      };
      const gone = abortWhenClientGone(call);
      const stop = (): void => {
        leases.off('change', onChange);
        call.off('drain', onDrain);
        gone.dispose();
      };
      gone.controller.signal.addEventListener('abort', stop, { once: true });
      call.on('drain', onDrain);
      // Subscribed before the snapshot is taken, on the same tick: nothing falls between them.
      leases.on('change', onChange);
      for (const lease of leases.list()) {
        if (dut === '' || lease.dut === dut)
          send({
            kind: Kind.KIND_HELD,
            lease: toWireLease(lease, who),
            dut: lease.dut,
            waiting: 0,
            at: new Date(),
          });
      }
    },
  };
}
