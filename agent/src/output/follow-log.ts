/**
 * Pumps an output log to one follower. Reads happen only when the transport said it can take
 * more (write() returned true, or after 'drain'), so a slow follower costs one pending read and
 * never slows the job or other followers. Each follower is just an offset.
 */
import type { LogPiece, OutputLog, StreamName } from './output-log.js';

/**
 * Largest piece read and sent at once. Bigger pieces move faster over gRPC, but a connection
 * dropped mid-send pins its streams' in-flight pieces until Node's HTTP/2 session is collected:
 * with 512 KiB pieces, 25 dropped streams still held 24.9 MiB after GC (stream-leaks.test.ts, whose
 * bound is 8 MiB). 128 KiB keeps that within the bound; small output still goes out at once, see
 * FollowSink.settled.
 */
export const FOLLOW_PIECE_BYTES = 128 * 1024;

/**
 * Bytes a follower may have handed to the transport and not yet flushed: two pieces, so the next
 * read overlaps the send, and a follower that stops reading (or is abandoned on a connection that
 * stays up) holds at most this much, not the transport's 16 messages.
 */
export const FOLLOW_INFLIGHT_BYTES = 2 * FOLLOW_PIECE_BYTES;

/** What the pump needs from a transport (a gRPC server stream in production). */
export interface FollowSink {
  /** Sends a piece; false means "buffer full, wait for drained()". */
  send(piece: LogPiece): boolean;
  /** Resolves when the transport can take more, or when `signal` aborts. */
  drained(signal: AbortSignal): Promise<void>;
  /**
   * Optional coalescing: true while earlier pieces are still on their way. A follower that has
   * less than a full piece to send then first waits for settled() (the log grows meanwhile), so
   * a fast job goes out in big messages, while output that trickles (a serial console) still
   * goes out the moment it arrives, since nothing is in flight then.
   */
  busy?(): boolean;
  /** Resolves when nothing is in flight any more, or when `signal` aborts. */
  settled?(signal: AbortSignal): Promise<void>;
  /**
   * Optional: the buffer the next piece (`length` bytes at `offset`) is read into, a view of the
   * message that will carry it, so the bytes are not copied again to be sent. send() is then
   * given that same buffer, or a shorter view of it if the read came up short.
   */
  buffer?(offset: number, length: number, stream: StreamName): Buffer;
}

/** How a follow ended: the log was complete, or the follower went away. */
export type FollowEnd = 'complete' | 'caught-up' | 'aborted';

/**
 * Streams `log` from `offset`. With `follow`, waits for growth until the log is closed;
 * without it, stops once caught up with what exists now.
 */
export async function followLog(opts: {
  log: OutputLog;
  offset: number;
  follow: boolean;
  signal: AbortSignal;
  sink: FollowSink;
  /**
   * Told when the follower was behind the log's start (its head was dropped, see
   * OutputLog.trimTo) and skips from `from` to `to`; without it the skip is silent.
   */
  onSkip?(from: number, to: number): void;
}): Promise<FollowEnd> {
  const { log, follow, signal, sink } = opts;
  const release = log.acquire();
  try {
    let offset = opts.offset;
    const stopAt = follow ? Number.POSITIVE_INFINITY : log.length;
    for (;;) {
      if (signal.aborted) return 'aborted';
      if (offset >= stopAt) return 'caught-up';
      if (offset < log.start) {
        opts.onSkip?.(offset, log.start);
        offset = log.start;
        continue;
      }
      if (offset < log.length) {
        if (log.length - offset < FOLLOW_PIECE_BYTES && !log.closed && sink.busy?.() && sink.settled) {
          await sink.settled(signal);
          continue;
        }
        const at = offset;
        const into =
          sink.buffer && ((length: number, stream: StreamName) => sink.buffer!(at, length, stream));
        const piece = await log.read(offset, Math.min(FOLLOW_PIECE_BYTES, stopAt - offset), into);
        if (signal.aborted) return 'aborted';
        if (piece.data.length === 0) continue;
        offset += piece.data.length;
        if (!sink.send(piece)) await sink.drained(signal);
        continue;
      }
      if (log.closed) return 'complete';
      await log.waitForGrowth(offset, signal);
    }
  } finally {
    release();
  }
}
