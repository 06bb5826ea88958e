/**
 * The `out` of a capture under test: a Writable that decodes the serial records it is given, and
 * can be "stalled" (write callbacks held back) to play a slow job-log consumer.
 */
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { type SerialRecord, SerialRecordDecoder } from '../../src/serial-framing.js';

/** A decoding sink with a stall switch and event-driven waits. */
export class RecordSink {
  /** Records decoded so far (only from writes the sink has consumed). */
  readonly records: SerialRecord[] = [];
  /** The stream to pass as `out`. */
  readonly stream: Writable;
  private readonly decoder = new SerialRecordDecoder();
  private readonly changes = new EventEmitter();
  private held: Array<() => void> = [];
  private stalled = false;

  /** Events the capture has handed to `stream`, consumed or not (it may be stalled). */
  readonly offeredEvents: string[] = [];
  private readonly offeredDecoder = new SerialRecordDecoder();

  constructor(highWaterMark = 16 * 1024) {
    const sink = this;
    // Tees what the capture writes, so a test sees an event before a stalled consumer takes it.
    class TeeWritable extends Writable {
      override write(chunk: Buffer, ...rest: never[]): boolean {
        for (const r of sink.offeredDecoder.push(chunk)) {
          if (r.kind === 'event') sink.offeredEvents.push(`${r.event} ${r.detail}`);
        }
        sink.changes.emit('change');
        return super.write(chunk, ...rest);
      }
    }
    this.stream = new TeeWritable({
      highWaterMark,
      write: (chunk: Buffer, _encoding, callback) => {
        const consume = (): void => {
          this.records.push(...this.decoder.push(chunk));
          this.changes.emit('change');
          callback();
        };
        if (this.stalled) {
          this.held.push(consume);
          this.changes.emit('change');
        } else consume();
      },
    });
  }

  /** Holds every following write until `release()`. */
  stall(): void {
    this.stalled = true;
  }

  /** Consumes the held writes and stops stalling. */
  release(): void {
    this.stalled = false;
    const held = this.held;
    this.held = [];
    for (const consume of held) consume();
  }

  /** Data bytes of all chunk records so far, concatenated. */
  data(): Buffer {
    return Buffer.concat(this.records.flatMap((r) => (r.kind === 'chunk' ? [r.data] : [])));
  }

  /** Events so far as `name detail` strings. */
  events(): string[] {
    return this.records.flatMap((r) => (r.kind === 'event' ? [`${r.event} ${r.detail}`] : []));
  }

  /** Resolves once `predicate` holds, re-checked on every write; rejects after `timeoutMs`. */
  until(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.changes.off('change', check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.changes.off('change', check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events: ${this.events()}`));
      }, timeoutMs);
      this.changes.on('change', check);
      check();
    });
  }
}
