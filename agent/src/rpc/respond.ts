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

/** An AbortController that fires on any of `events` from the call; dispose() removes the listeners. */
function abortOn(
  call: NodeJS.EventEmitter,
  events: readonly string[],
): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  for (const event of events) call.once(event, abort);
  return {
    controller,
    dispose() {
      for (const event of events) call.off(event, abort);
    },
  };
}

/**
 * An AbortController that fires when the client goes away. grpc-node #2583: a cancel can surface
 * as 'cancelled', 'close' or 'error', so all three are heard; dispose() removes the listeners.
 */
export function abortWhenClientGone(call: NodeJS.EventEmitter): {
  controller: AbortController;
  dispose: () => void;
} {
  return abortOn(call, ['cancelled', 'close', 'error']);
}

/**
 * The same for a call whose client streams its request (client streaming): there 'close' also
 * follows the client's normal end of input, so only 'cancelled' and 'error' mean it went away.
 */
export function abortWhenClientCancels(call: NodeJS.EventEmitter): {
  controller: AbortController;
  dispose: () => void;
} {
  return abortOn(call, ['cancelled', 'error']);
}

/**
 * Writes to a server stream with backpressure counted in bytes, not messages. grpc-js's server
 * stream is an object-mode Writable: write() says "full" only after 16 messages, so with 256 KiB
 * pieces a client that stops reading (or leaves while its connection stays up) tied up 4 MiB per
 * stream. Here at most `limitBytes` are in grpc-js and not yet handed to HTTP/2 (the write
 * callback). grpc-js never calls that callback once a call is cancelled (its sendMessage returns
 * early; the 'drain' that never fires), so every wait also ends on `signal`.
 */
export class ByteBoundedWriter<Res> {
  #pending = 0;
  #wake: (() => void) | undefined;
  #idle: (() => void) | undefined;

  constructor(
    private readonly call: { write(msg: Res, cb: (err?: Error | null) => void): boolean },
    private readonly limitBytes: number,
  ) {}

  /** Bytes written and not yet flushed to HTTP/2. */
  get pending(): number {
    return this.#pending;
  }

  /** Writes `msg` (about `bytes` long); false means "wait for drained() before the next one". */
  write(msg: Res, bytes: number): boolean {
    this.#pending += bytes;
    this.call.write(msg, () => {
      this.#pending -= bytes;
      if (this.#pending < this.limitBytes) this.#wake?.();
      if (this.#pending === 0) this.#idle?.();
    });
    return this.#pending < this.limitBytes;
  }

  /** Resolves once below the limit again, or when `signal` aborts; leaves no listener behind. */
  drained(signal: AbortSignal): Promise<void> {
    if (this.#pending < this.limitBytes || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#wake = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Resolves once everything written was handed to HTTP/2, or when `signal` aborts. */
  settled(signal: AbortSignal): Promise<void> {
    if (this.#pending === 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.#idle = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#idle = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
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
