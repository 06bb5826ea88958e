/**
 * Where handler errors become gRPC statuses (through protocol's one mapping). Unexpected errors
 * are logged with their stack here and reach the client as a plain INTERNAL message.
 */
import type { ServerUnaryCall, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { type GrpcErrorStatus, toGrpcStatus } from '../../../protocol/src/status.js';

/** Maps an error to a status, logging the ones that are bugs. */
export function statusFor(log: Logger, method: string, err: unknown): GrpcErrorStatus {
  const status = toGrpcStatus(err);
  if (status.internal) log.error({ err, method }, 'internal error');
  return status;
}

/** Adapts an async function to a grpc-js unary handler. */
export function unary<Req, Res>(
  log: Logger,
  method: string,
  fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    fn(call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(statusFor(log, method, err)),
    );
  };
}

/** Ends a server stream with an error status, unless the client is already gone. */
export function failStream<Req, Res>(
  log: Logger,
  method: string,
  call: ServerWritableStream<Req, Res>,
  err: unknown,
): void {
  if (call.cancelled || call.destroyed) return;
  call.emit('error', statusFor(log, method, err));
}

/**
 * An AbortController that fires when the client goes away. grpc-node #2583: a cancel can surface
 * as 'cancelled', 'close' or 'error', so all three are heard; dispose() removes the listeners.
 */
export function abortWhenClientGone(call: NodeJS.EventEmitter): {
  controller: AbortController;
  dispose: () => void;
} {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  call.once('cancelled', abort);
  call.once('close', abort);
  call.once('error', abort);
  return {
    controller,
    dispose() {
      call.off('cancelled', abort);
      call.off('close', abort);
      call.off('error', abort);
    },
  };
}

/** Resolves on the first `event` from `emitter`, or when `signal` aborts; cleans up both ways. */
export function eventOrAbort(
  emitter: NodeJS.EventEmitter,
  event: string,
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      emitter.off(event, done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    emitter.on(event, done);
    signal.addEventListener('abort', done, { once: true });
  });
}
