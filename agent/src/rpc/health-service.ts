/**
 * grpc.health.v1.Health as grpc-health-check implements it, with a bound on the service name.
 * The library answers an unknown name by echoing it ("Health status unknown for service …"), so a
 * 100 KB name came back as a 100 KB status message; and Watch keeps a map entry per name asked,
 * which it empties but never deletes when the watch ends, so the names are bounded here too.
 */
import type {
  Server,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { failStream, statusFor } from './respond.js';

/** Longest service name answered; ours are at most `jiglet.dut.` + a 63-character DUT name. */
export const MAX_HEALTH_SERVICE_NAME = 200;

type Handler = (...args: unknown[]) => void;

/** Adds `health` to `server`, refusing over-long service names with INVALID_ARGUMENT. */
export function addHealthService(server: Server, health: HealthImplementation, log: Logger): void {
  // The library builds its handlers inside addToServer; borrow them to put the check in front.
  let definition: Parameters<Server['addService']>[0] | undefined;
  let handlers: UntypedServiceImplementation = {};
  health.addToServer({
    addService: (def: Parameters<Server['addService']>[0], impl: UntypedServiceImplementation) => {
      definition = def;
      handlers = impl;
    },
  } as unknown as Server);
  const check = handlers.check as Handler;
  const watch = handlers.watch as Handler;
  server.addService(definition!, {
    ...handlers,
    check: (call: ServerUnaryCall<{ service: string }, unknown>, callback: sendUnaryData<unknown>) => {
      const refused = refuse(call.request.service);
      if (refused) callback(statusFor(log, 'Health/Check', refused));
      else check(call, callback);
    },
    watch: (call: ServerWritableStream<{ service: string }, unknown>) => {
      const refused = refuse(call.request.service);
      if (refused) return failStream(log, 'Health/Watch', call, refused);
      watch(call);
      // Registered after the library's own listener, which has removed this call's watcher.
      call.on('cancelled', () => forgetIfUnwatched(health, call.request.service));
    },
  });
}

/** The library's per-name watcher sets (grpc-health-check 2.x keeps them in `watchers`). */
function watcherSets(health: HealthImplementation): Map<string, Set<unknown>> | undefined {
  const sets = (health as unknown as { watchers?: unknown }).watchers;
  return sets instanceof Map ? (sets as Map<string, Set<unknown>>) : undefined;
}

function forgetIfUnwatched(health: HealthImplementation, service: string): void {
  const sets = watcherSets(health);
  if (sets?.get(service)?.size === 0) sets.delete(service);
}

/** Names with a watcher entry in the library (for leak tests); 0 if its internals changed. */
export function watchedServiceNames(health: HealthImplementation): number {
  return watcherSets(health)?.size ?? 0;
}

function refuse(service: string): Error | undefined {
  if (service.length <= MAX_HEALTH_SERVICE_NAME) return undefined;
  return invalidArgument(
    `a health service name has at most ${MAX_HEALTH_SERVICE_NAME} characters; got ${service.length} ("${service.slice(0, 32)}…")`,
  );
}
