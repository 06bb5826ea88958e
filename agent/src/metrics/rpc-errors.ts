/**
 * Counts every non-OK status the agent sends, by method and gRPC status name. A server
 * interceptor sees the statuses of every handler and of the auth interceptor's refusals, so no
 * handler has to know about metrics (errors become statuses in one place: respond.ts).
 */
import { ServerInterceptingCall, type ServerInterceptor, status } from '@grpc/grpc-js';
import type { Counter } from 'prom-client';

/** The interceptor; install it inside the auth interceptor so refusals are counted too. */
export function rpcErrorInterceptor(counter: Counter<'method' | 'code'>): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      sendStatus: (sent, next) => {
        if (sent.code !== status.OK) {
          counter.inc({ method: method.path, code: status[sent.code] ?? String(sent.code) });
        }
        next(sent);
      },
    });
}
