/**
 * Who is calling on the local endpoint: each accepted connection is tagged with a marker the agent
 * chose (its `remoteAddress`, which grpc-js reports as the call's peer) and this registry maps the
 * marker to the job the connection was found to come from. A TLS connection's peer is an IP
 * address and port, which no marker can equal; markers carry 128 random bits and die with their
 * connection.
 */
import { randomUUID } from 'node:crypto';
import { permissionDenied } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import type { LocalGrant } from '../jobs/supervisor.js';
import type { ScopedJob } from './local-scope.js';

/** Peers of local connections start with this; the rest is random. */
const MARKER_PREFIX = 'jiglet-local:';

/** What one accepted connection was found to be. */
export type LocalConnection =
  | { kind: 'job'; job: string; owner: string; dut: string }
  /** A process that belongs to no running job with a grant; every call it makes is refused. */
  | { kind: 'stranger'; why: string };

/** A call from a job: whom it acts as, and its scope. */
export interface LocalCall {
  identity: Identity;
  scope: ScopedJob;
}

/** The text every call from outside a job gets. */
export const STRANGER_TEXT =
  'this socket serves only processes of a running jiglet job; outside a job use jigctl with a client certificate';

/** Connections of the local endpoint, by marker. */
export class LocalCallers {
  readonly #byMarker = new Map<string, LocalConnection>();
  readonly #grantOf: (job: string) => LocalGrant | undefined;

  /** `grantOf` answers for jobs that are running now (Supervisor.localGrantOf). */
  constructor(grantOf: (job: string) => LocalGrant | undefined) {
    this.#grantOf = grantOf;
  }

  /** Registers a connection; returns the marker to put on its socket. */
  add(connection: LocalConnection): string {
    const marker = `${MARKER_PREFIX}${randomUUID()}`;
    this.#byMarker.set(marker, connection);
    return marker;
  }

  /** Forgets a closed connection. */
  remove(marker: string): void {
    this.#byMarker.delete(marker);
  }

  /** Open local connections (for leak checks). */
  get size(): number {
    return this.#byMarker.size;
  }

  /**
   * The caller of a call whose peer is `peer`: undefined for a TLS connection, the job's identity
   * and scope for a job's; throws PERMISSION_DENIED for anyone else, or a job that has ended.
   */
  callerOf(peer: string): LocalCall | undefined {
    if (!peer.startsWith(MARKER_PREFIX)) return undefined;
    const conn = this.#byMarker.get(peer);
    if (conn === undefined) throw permissionDenied(STRANGER_TEXT);
    if (conn.kind === 'stranger') throw permissionDenied(`${STRANGER_TEXT} (${conn.why})`);
    // Asked at every call: a connection outliving its job (it cannot, the kernel closes its fds
    // when the job's last process dies) would still get nothing.
    const grant = this.#grantOf(conn.job);
    if (grant === undefined) throw permissionDenied(`job ${conn.job} has ended; ${STRANGER_TEXT}`);
    return {
      identity: { name: conn.owner, role: grant.role, fingerprint: `job:${conn.job}` },
      scope: { id: conn.job, dut: conn.dut, lease: grant.lease },
    };
  }
}
