/**
 * The one server interceptor that authenticates and authorizes every call before any handler
 * runs, and so the one place that decides who is calling: the client certificate on the TLS
 * port; on the local endpoint, the job the connection comes from (local-callers.ts), acting as
 * its owner with the owner's role, within the job's DUT and lease (local-scope.ts).
 */
import {
  type Metadata,
  type Responder,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** grpc-js's AuthContext (not exported from its index). */
type AuthContext = ReturnType<ServerInterceptingCallInterface['getAuthContext']>;

import { toGrpcStatus } from '../../../protocol/src/status.js';
import { LEASE_METADATA_KEY, leaseOf } from '../leases/lease-header.js';
import type { LocalCall, LocalCallers } from '../local/local-callers.js';
import { checkLocalMethod, checkLocalTarget, localLease } from '../local/local-scope.js';
import { type Identity, identityFromCertificate } from './identity.js';
import { authorizeMethod } from './permissions.js';

/** The auth context of a call from a job; no TLS connection's context has `localCaller`. */
interface LocalAuthContext extends AuthContext {
  transportSecurityType: 'jiglet-local';
  localCaller: Identity;
}

/** The caller's identity: its TLS client certificate, or the job it calls from; throws if unusable. */
export function identityOf(call: Pick<ServerInterceptingCallInterface, 'getAuthContext'>): Identity {
  const context = call.getAuthContext() as AuthContext | LocalAuthContext | undefined;
  if (context && 'localCaller' in context) return context.localCaller;
  return identityFromCertificate(context?.sslPeerCertificate);
}

/** What the interceptor needs besides its log. */
export interface AuthOptions {
  /** Connections of the local endpoint; without it every call needs a certificate. */
  local?: LocalCallers;
  /** The DUT of a job (for a job's StopJob/WriteStdin of another job); throws NOT_FOUND. */
  dutOfJob?: (id: string) => string;
}

/** A job's call: handlers see the job's owner as the caller (identityOf). */
class LocalInterceptingCall extends ServerInterceptingCall {
  readonly #context: LocalAuthContext;

  constructor(next: ServerInterceptingCallInterface, responder: Responder, who: Identity) {
    super(next, responder);
    this.#context = { transportSecurityType: 'jiglet-local', localCaller: who };
  }

  override getAuthContext(): AuthContext {
    return this.#context;
  }
}

/** Builds the interceptor; refusals are logged with the caller and method. */
export function authInterceptor(log: Logger, opts: AuthOptions = {}): ServerInterceptor {
  return (method, call) => {
    const refuse = (err: unknown, who?: string): void => {
      const status = toGrpcStatus(err);
      log.warn({ method: method.path, peer: call.getPeer(), who, reason: status.details }, 'call refused');
      call.sendStatus(status);
    };
    let local: LocalCall | undefined;
    let refusal: unknown;
    try {
      local = opts.local?.callerOf(call.getPeer());
    } catch (err) {
      refusal = err;
    }
    if (refusal !== undefined) {
      return new ServerInterceptingCall(call, {
        start: (next) => next({ onReceiveMetadata: () => refuse(refusal) }),
      });
    }
    if (local) return localCall(method.path, call, local, opts, refuse);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            try {
              authorizeMethod(identityOf(call), method.path);
            } catch (err) {
              refuse(err);
              return;
            }
            mdNext(metadata);
          },
        });
      },
    });
  };
}

/**
 * A job's call: the owner's role decides the method, the job's scope the rest. Its lease goes on
 * the call when it carries none, so `jigctl power on` inside a queued job needs no JIGLET_LEASE;
 * each request message is checked for the DUT, lease and job it names before a handler sees it.
 */
function localCall(
  path: string,
  call: ServerInterceptingCallInterface,
  { identity, scope }: LocalCall,
  opts: AuthOptions,
  refuse: (err: unknown, who?: string) => void,
): ServerInterceptingCall {
  const who = `${identity.name} (job ${scope.id})`;
  let refused = false;
  const responder: Responder = {
    start: (next) => {
      let rule: ReturnType<typeof checkLocalMethod> | undefined;
      next({
        onReceiveMetadata: (metadata: Metadata, mdNext: (m: Metadata) => void) => {
          try {
            authorizeMethod(identity, path);
            rule = checkLocalMethod(scope, path);
            const lease = localLease(scope, leaseOf({ metadata }));
            if (lease !== undefined) metadata.set(LEASE_METADATA_KEY, lease);
          } catch (err) {
            refused = true;
            refuse(err, who);
            return;
          }
          mdNext(metadata);
        },
        onReceiveMessage: (message: unknown, msgNext: (m: unknown) => void) => {
          if (refused) return;
          try {
            const fields = typeof message === 'object' && message !== null ? message : {};
            checkLocalTarget(scope, rule!.target(fields as Record<string, unknown>), (id) => {
              if (!opts.dutOfJob) throw new Error('no job lookup');
              return opts.dutOfJob(id);
            });
          } catch (err) {
            refused = true;
            refuse(err, who);
            return;
          }
          msgNext(message);
        },
        // A refused call's status is sent; its handler must not run on the half-close.
        onReceiveHalfClose: (halfNext: () => void) => {
          if (!refused) halfNext();
        },
      });
    },
  };
  return new LocalInterceptingCall(call, responder, identity);
}
