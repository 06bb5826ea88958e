/**
 * Reading a server stream as an async iterable with one cancel path: aborting `signal` or leaving
 * the loop cancels the call on the agent, and an error arrives as the JigletError it stands for
 * (none when the caller aborted, which is how a follower is meant to end).
 */
import type { ClientReadableStream } from '@grpc/grpc-js';
import { fromGrpcError } from '../../protocol/src/status.js';

export async function* readStream<T>(
  call: ClientReadableStream<T>,
  signal?: AbortSignal,
): AsyncGenerator<T, void, undefined> {
  const onAbort = (): void => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) call.cancel();
  try {
    for await (const msg of call as AsyncIterable<T>) yield msg;
  } catch (err) {
    if (signal?.aborted) return;
    throw fromGrpcError(err as Error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    call.cancel();
  }
}
