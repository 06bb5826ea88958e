/**
 * Watches one serial capture job's log as it grows: keeps the port's state for `jigctl jig`, and
 * a sparse index of record boundaries with their times, so a reader asking for an offset or a
 * time starts decoding close to it instead of at the start of a long log.
 */
import { EventEmitter } from 'node:events';
import type { PositionedRecord } from '../../../jig-drivers/src/serial-framing.js';
import type { OutputLog } from '../output/output-log.js';
import { followSerial } from './serial-follow.js';

/** Console text kept for a quick look at the prompt (exec). */
const RECENT_CHARS = 1024;
/** One index entry per this many log bytes. */
const CHECKPOINT_BYTES = 64 * 1024;

/** What the capture says about its port. */
export type PortState = 'starting' | 'open' | 'absent' | 'stopped';

/** A record boundary and the time of the record that starts there. */
interface Checkpoint {
  offset: number;
  at: number;
}

/** The state of one capture log; emits 'record' for each record it decodes. */
export class SerialMonitor extends EventEmitter {
  readonly jobId: string;
  readonly log: OutputLog;
  state: PortState = 'starting';
  port = '';
  bytesCaptured = 0;
  lastEvent = '';
  lastEventAt = 0;
  /** The offset just past the last record decoded: a boundary a new reader can start at. */
  boundary = 0;
  /** The last RECENT_CHARS of console text (latin1), e.g. to see whether a prompt is showing. */
  recentText = '';
  readonly #checkpoints: Checkpoint[] = [{ offset: 0, at: 0 }];
  readonly #controller = new AbortController();
  readonly done: Promise<void>;

  constructor(jobId: string, log: OutputLog, onError: (err: unknown) => void) {
    super();
    this.jobId = jobId;
    this.log = log;
    this.done = followSerial({
      log,
      from: 0,
      follow: true,
      signal: this.#controller.signal,
      onRecord: (record) => {
        this.#take(record);
        return true;
      },
      drained: async () => {},
    }).then(
      () => {
        this.state = 'stopped';
        this.emit('end');
      },
      (err: unknown) => {
        this.state = 'stopped';
        onError(err);
        this.emit('end');
      },
    );
  }

  /** Where to start decoding to reach `offset` or `sinceMs`: a boundary at or before it. */
  seek(target: { offset: number } | { sinceMs: number }): number {
    // Before the oldest byte kept (see trimTo), 0: the reader then skips to the start and is
    // told that what it asked for was dropped.
    let best = 0;
    for (const c of this.#checkpoints) {
      const before = 'offset' in target ? c.offset <= target.offset : c.at <= target.sinceMs;
      if (!before) break;
      best = c.offset;
    }
    return best;
  }

  /**
   * Drops the log's oldest bytes so that it holds at most about `keepBytes`: cut at the newest
   * checkpoint (a record boundary) that leaves at least that much, so what is kept starts with
   * a whole record. Resolves once the blocks are freed; does nothing if no checkpoint fits.
   */
  async trimTo(keepBytes: number): Promise<void> {
    const floor = this.boundary - keepBytes;
    let cut = -1;
    for (let i = 0; i < this.#checkpoints.length && this.#checkpoints[i]!.offset <= floor; i++) cut = i;
    if (cut <= 0) return;
    this.#checkpoints.splice(0, cut);
    await this.log.trimTo(this.#checkpoints[0]!.offset);
  }

  /** Stops following (the log itself stays). */
  close(): Promise<void> {
    this.#controller.abort();
    return this.done;
  }

  #take(record: PositionedRecord): void {
    const last = this.#checkpoints.at(-1)!;
    if (record.offset - last.offset >= CHECKPOINT_BYTES) {
      this.#checkpoints.push({ offset: record.offset, at: record.at });
    }
    this.boundary = record.nextOffset;
    if (record.kind === 'chunk') {
      this.bytesCaptured += record.data.length;
      // Only the tail can be kept: a 64 KiB chunk is not decoded whole for 1 KiB of it.
      this.recentText = (this.recentText + record.data.subarray(-RECENT_CHARS).toString('latin1')).slice(
        -RECENT_CHARS,
      );
    } else {
      this.lastEvent = `${record.event} ${record.detail}`.trim();
      this.lastEventAt = record.at;
      if (record.event === 'open' || record.event === 'reopen') {
        this.state = 'open';
        this.port = record.detail;
      } else if (record.event === 'gone' || record.event === 'waiting') {
        this.state = 'absent';
      }
    }
    this.emit('record', record);
  }
}
