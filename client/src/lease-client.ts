/**
 * The lease half of the client library: claim, renew, release and list leases, the interceptor
 * that puts the current lease on every call, and `withLease`, which holds a lease (heartbeats)
 * while a function runs and releases it afterwards, also when the function throws.
 */
import {
  type ChannelCredentials,
  type Client,
  InterceptingCall,
  type Interceptor,
  Metadata,
} from '@grpc/grpc-js';
import {
  type ClaimResponse,
  type Lease,
  LeaseServiceClient,
  type ListLeasesResponse,
  type RenewResponse,
  WatchLeasesResponse_Kind,
} from '../../protocol/gen/jiglet/v1/leases.js';
import { invalidArgument, JigletError } from '../../protocol/src/errors.js';
import { readStream } from './read-stream.js';
import { callOptions, UNARY_DEADLINE_MS, unaryCall } from './unary-call.js';

export type { Lease } from '../../protocol/gen/jiglet/v1/leases.js';

/** One lease event as `watch` yields it. */
export interface LeaseEvent {
  kind: 'held' | 'granted' | 'renewed' | 'released' | 'expired' | 'revoked' | 'waiting';
  dut: string;
  lease?: Lease;
  /** Claims waiting for `dut` ('waiting' events). */
  waiting: number;
  at: Date;
}

const EVENT_KIND: Record<WatchLeasesResponse_Kind, LeaseEvent['kind'] | undefined> = {
  [WatchLeasesResponse_Kind.KIND_UNSPECIFIED]: undefined,
  [WatchLeasesResponse_Kind.KIND_HELD]: 'held',
  [WatchLeasesResponse_Kind.KIND_GRANTED]: 'granted',
  [WatchLeasesResponse_Kind.KIND_RENEWED]: 'renewed',
  [WatchLeasesResponse_Kind.KIND_RELEASED]: 'released',
  [WatchLeasesResponse_Kind.KIND_EXPIRED]: 'expired',
  [WatchLeasesResponse_Kind.KIND_REVOKED]: 'revoked',
  [WatchLeasesResponse_Kind.KIND_WAITING]: 'waiting',
  [WatchLeasesResponse_Kind.UNRECOGNIZED]: undefined,
};

/** Metadata key the agent reads the lease from. */
export const LEASE_METADATA_KEY = 'jiglet-lease';

/** What to claim. */
export interface ClaimOptions {
  dut?: string;
  labels?: Record<string, string>;
  ttlMs?: number;
  /** Wait this long for a free DUT (default: fail at once). */
  waitMs?: number;
  priority?: number;
}

/** Adds the current lease (if any) to every call's metadata. */
export function leaseInterceptor(current: () => string | undefined): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const lease = current();
        if (lease) metadata.set(LEASE_METADATA_KEY, lease);
        next(metadata, listener);
      },
    });
}

/** The LeaseService client. */
export class LeaseClient {
  readonly #stub: LeaseServiceClient;

  constructor(server: string, creds: ChannelCredentials, channel: ReturnType<Client['getChannel']>) {
    this.#stub = new LeaseServiceClient(server, creds, { channelOverride: channel });
  }

  /** Claims a DUT by name or labels; with `waitMs`, queues until one is free. */
  async claim(opts: ClaimOptions): Promise<Lease> {
    // The wire fields are unsigned: a negative number would be garbled, not refused, on the way.
    for (const [name, value] of [
      ['TTL', opts.ttlMs],
      ['wait', opts.waitMs],
    ] as const) {
      if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > 0xffffffff))
        throw invalidArgument(`a lease ${name} is a whole number of milliseconds ≥ 0; got ${value}`);
    }
    const res = await unaryCall<ClaimResponse>((cb) =>
      this.#stub.claim(
        {
          dut: opts.dut ?? '',
          labels: opts.labels ?? {},
          ttlMs: opts.ttlMs ?? 10 * 60_000,
          waitMs: opts.waitMs ?? 0,
          priority: opts.priority ?? 0,
        },
        new Metadata(),
        callOptions(UNARY_DEADLINE_MS + (opts.waitMs ?? 0)),
        cb,
      ),
    );
    return mustHave(res.lease);
  }

  async renew(leaseId: string): Promise<Lease> {
    const res = await unaryCall<RenewResponse>((cb) =>
      this.#stub.renew({ leaseId }, new Metadata(), callOptions(), cb),
    );
    return mustHave(res.lease);
  }

  async release(leaseId: string): Promise<void> {
    await unaryCall((cb) => this.#stub.release({ leaseId }, new Metadata(), callOptions(), cb));
  }

  async list(): Promise<Lease[]> {
    const res = await unaryCall<ListLeasesResponse>((cb) =>
      this.#stub.listLeases({}, new Metadata(), callOptions(), cb),
    );
    return res.leases;
  }

  /**
   * The leases held now (kind 'held'), then every change, until `signal` aborts or the loop is
   * left (which cancels the stream on the agent). Kinds this client does not know are skipped.
   */
  async *watch(
    opts: { dut?: string; signal?: AbortSignal } = {},
  ): AsyncGenerator<LeaseEvent, void, undefined> {
    const call = this.#stub.watchLeases({ dut: opts.dut ?? '' });
    for await (const msg of readStream(call, opts.signal)) {
      const kind = EVENT_KIND[msg.kind];
      if (kind)
        yield { kind, dut: msg.dut, lease: msg.lease, waiting: msg.waiting, at: msg.at ?? new Date() };
    }
  }
}

function mustHave(lease: Lease | undefined): Lease {
  if (!lease) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered without a lease');
  return lease;
}

/** What withLease needs of a client: its lease service and the lease its calls carry. */
export interface LeaseHolder {
  readonly leases: LeaseClient;
  lease: string | undefined;
}

/**
 * Claims, runs `fn` with every call of `client` carrying the lease, renews it every third of its
 * TTL meanwhile, and releases it afterwards (also when `fn` throws). A renewal that fails ends the
 * heartbeat; the agent then refuses the stale lease on the next mutating call, which `fn` sees.
 */
export async function withLease<T>(
  client: LeaseHolder,
  claim: ClaimOptions,
  fn: (lease: Lease) => Promise<T>,
): Promise<T> {
  const lease = await client.leases.claim(claim);
  const previous = client.lease;
  client.lease = lease.id;
  const heartbeat = setInterval(
    () => {
      client.leases.renew(lease.id).catch(() => clearInterval(heartbeat));
    },
    Math.max(500, Math.floor(lease.ttlMs / 3)),
  );
  try {
    return await fn(lease);
  } finally {
    clearInterval(heartbeat);
    client.lease = previous;
    await client.leases.release(lease.id).catch((err: unknown) => {
      // Already over (expired, revoked): nothing left to release.
      if (!(err instanceof JigletError && err.code === 'JIGLET_E_NOT_FOUND')) throw err;
    });
  }
}
