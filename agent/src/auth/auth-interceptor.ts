/**
 * The one server interceptor that authenticates and authorizes every call before any handler
 * runs: identity from the client certificate, then the method → permission table.
 */
import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toGrpcStatus } from '../../../protocol/src/status.js';
import { type Identity, identityFromCertificate } from './identity.js';
import { authorizeMethod } from './permissions.js';

/** The caller's identity from its TLS client certificate; throws if unusable. */
export function identityOf(call: Pick<ServerInterceptingCallInterface, 'getAuthContext'>): Identity {
  return identityFromCertificate(call.getAuthContext()?.sslPeerCertificate);
}

/** Builds the interceptor; refusals are logged with the caller and method. */
export function authInterceptor(log: Logger): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            try {
              authorizeMethod(identityOf(call), method.path);
            } catch (err) {
              const status = toGrpcStatus(err);
              log.warn({ method: method.path, peer: call.getPeer(), reason: status.details }, 'call refused');
              call.sendStatus(status);
              return;
            }
            mdNext(metadata);
          },
        });
      },
    });
}
