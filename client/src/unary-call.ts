/**
 * How every client stub makes a unary call: a deadline, so a hung agent never hangs a CI job, and
 * the agent's error turned back into a coded JigletError.
 */
import type { CallOptions } from '@grpc/grpc-js';
import { fromGrpcError } from '../../protocol/src/status.js';

/** Deadline of a quick RPC. */
export const UNARY_DEADLINE_MS = 30_000;

/** Call options with a deadline `deadlineMs` from now. */
export function callOptions(deadlineMs = UNARY_DEADLINE_MS): Partial<CallOptions> {
  return { deadline: Date.now() + deadlineMs };
}

/** Adapts a callback-style unary stub call to a promise that rejects with a JigletError. */
export function unaryCall<T>(invoke: (cb: (err: Error | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(fromGrpcError(err)) : resolve(res as T)));
  });
}
