/**
 * Reads a serial capture log (a `jig-driver serial` job's output) as positioned records. Built
 * on the same follower pump as job output, so backpressure and cancellation work the same way;
 * only the stdout stream holds records (the capture's stderr is diagnostics).
 */
import { type PositionedRecord, SerialRecordDecoder } from '../../../jig-drivers/src/serial-framing.js';
import { type FollowEnd, followLog } from '../output/follow-log.js';
import type { OutputLog } from '../output/output-log.js';

/** Where a reader wants to start, and which records it wants to see. */
export interface SerialFollowOptions {
  log: OutputLog;
  /** A record boundary to decode from (0, or a checkpoint). */
  from: number;
  /**
   * Where delivery starts: records before it are decoded but not delivered, and a chunk whose
   * data it falls inside is delivered from there on (an expect's nextOffset can be mid-record).
   */
  skipBefore?: number;
  /** Records stamped before this time (epoch ms) are decoded but not delivered. */
  skipUntilMs?: number;
  follow: boolean;
  signal: AbortSignal;
  /** Receives each record; false = "full, wait for drained()". */
  onRecord(record: PositionedRecord): boolean;
  drained(signal: AbortSignal): Promise<void>;
}

/** Streams the records of a capture log; see followLog for how it ends. */
export function followSerial(opts: SerialFollowOptions): Promise<FollowEnd> {
  let decoder = new SerialRecordDecoder(opts.from);
  const skipBefore = opts.skipBefore ?? 0;
  const skipUntil = opts.skipUntilMs ?? 0;
  return followLog({
    log: opts.log,
    offset: opts.from,
    follow: opts.follow,
    signal: opts.signal,
    sink: {
      send(piece) {
        if (piece.stream !== 'stdout') return true;
        let more = true;
        for (const whole of decoder.pushPositioned(piece.data, piece.offset)) {
          const record = whole.offset < skipBefore ? fromOffset(whole, skipBefore) : whole;
          if (record === undefined || record.at < skipUntil) continue;
          more = opts.onRecord(record) && more;
        }
        return more;
      },
      drained: (signal) => opts.drained(signal),
    },
    // The log's head was dropped under a reader that was behind (or asked for old bytes): it
    // goes on at the new start, a record boundary, and is told what it missed.
    onSkip(from, to) {
      decoder = new SerialRecordDecoder(to);
      if (to <= skipBefore) return;
      opts.onRecord({
        kind: 'event',
        at: Date.now(),
        event: 'trimmed',
        detail: `${to - from} bytes of older serial output were dropped (the agent keeps the newest part of a serial log; see retention.serialLogMaxBytes)`,
        offset: from,
        nextOffset: to,
      });
    },
  });
}

/**
 * What a reader that starts at `from` gets of a record that starts before it: the bytes of a
 * chunk at or after `from` (all of its data when `from` is in its header), as a record at
 * `from`; nothing of an event, or of a record that ends by then.
 */
function fromOffset(record: PositionedRecord, from: number): PositionedRecord | undefined {
  if (record.kind !== 'chunk' || record.nextOffset <= from) return undefined;
  const dataStart = record.nextOffset - record.data.length;
  return { ...record, offset: from, data: record.data.subarray(Math.max(0, from - dataStart)) };
}
