/**
 * The on-the-wire format a serial capture writes to its job's output log. The log is a byte store,
 * so this framing is what lets readers timestamp serial output and see where the port was gone:
 *
 *   chunk:  `@<epoch-ms> <length>\n` then exactly <length> raw bytes (any value: NUL, 0xFF, \r, \n)
 *   event:  `!<epoch-ms> <event> <detail>\n` (one line; newlines in the detail become spaces)
 *
 * Events: `open <path>`, `gone <reason>`, `waiting <path>`, `reopen <path>`, `flush <what>`,
 * `dropped-input <bytes>`. A length prefix instead of escaping keeps data bytes untouched, so a
 * reader can copy a chunk's payload straight out of the log.
 */
import { invalidArgument } from '../../protocol/src/errors.js';

/** A header line longer than this is corruption, not a record (real headers are < 100 bytes). */
export const MAX_HEADER_BYTES = 4096;

/** Names of the status events a capture writes between data chunks. */
export type SerialEventName = 'open' | 'gone' | 'waiting' | 'reopen' | 'flush' | 'dropped-input';

/** One decoded record: a data chunk or a status event, each with its epoch-ms timestamp. */
export type SerialRecord =
  | { kind: 'chunk'; at: number; data: Buffer }
  | { kind: 'event'; at: number; event: string; detail: string };

const NEWLINE = 0x0a;

/** Frames `data` received at `at` (epoch ms) as one chunk record. */
export function encodeChunk(at: number, data: Uint8Array): Buffer {
  const header = Buffer.from(`@${Math.trunc(at)} ${data.length}\n`, 'latin1');
  return Buffer.concat([header, data]);
}

/** Frames a status event; the detail is flattened to one line so the record stays one line. */
export function encodeEvent(at: number, event: SerialEventName, detail: string): Buffer {
  const flat = detail.replace(/[\r\n]+/g, ' ');
  return Buffer.from(`!${Math.trunc(at)} ${event} ${flat}\n`, 'utf8');
}

/** A decoded record and where it sits in the byte stream it was decoded from. */
export type PositionedRecord = SerialRecord & {
  /**
   * Stream offset of the record's first header byte; for the rest of a chunk delivered from an
   * offset inside its data (agent/src/jig/serial-follow.ts), that offset.
   */
  offset: number;
  /** Stream offset just past its last byte: where the next record starts. */
  nextOffset: number;
};

/**
 * Streaming decoder: push byte slices cut anywhere (mid-header, mid-payload), get whole records.
 * Payload pieces are collected as slices and joined once, so a large chunk costs no re-copying.
 */
export class SerialRecordDecoder {
  private header: Buffer = Buffer.alloc(0);
  private need = 0; // payload bytes still missing for the current chunk; 0 = reading a header
  private at = 0;
  private pieces: Buffer[] = [];
  private consumed: number; // stream offset of the next byte pushed
  private recordStart: number; // stream offset where the record being read starts

  /** `startOffset`: the stream offset of the first byte pushed, which must be a record boundary. */
  constructor(startOffset = 0) {
    this.consumed = startOffset;
    this.recordStart = startOffset;
  }

  /** Feeds bytes; returns the records they complete, in order. Throws on a malformed header. */
  push(bytes: Uint8Array): SerialRecord[] {
    return this.pushPositioned(bytes).map(({ offset: _offset, nextOffset: _next, ...record }) => record);
  }

  /**
   * Like push(), with each record's place in the stream, so a reader can resume at a boundary.
   * `at` is the stream offset of `bytes` when the stream has other bytes in between (a job log
   * that interleaves stderr); the skipped bytes are counted inside the record they interrupt.
   */
  pushPositioned(bytes: Uint8Array, at = this.consumed): PositionedRecord[] {
    const records: PositionedRecord[] = [];
    if (this.idle) this.recordStart = at;
    const base = at;
    let rest = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const complete = (record: SerialRecord): void => {
      const nextOffset = base + (bytes.byteLength - rest.length);
      records.push({ ...record, offset: this.recordStart, nextOffset });
      this.recordStart = nextOffset;
    };
    while (rest.length > 0) {
      if (this.need > 0) {
        const take = Math.min(this.need, rest.length);
        this.pieces.push(rest.subarray(0, take));
        this.need -= take;
        rest = rest.subarray(take);
        if (this.need === 0) complete(this.finishChunk());
        continue;
      }
      const end = rest.indexOf(NEWLINE);
      if (end < 0) {
        this.header = Buffer.concat([this.header, rest]);
        rest = rest.subarray(rest.length);
        if (this.header.length > MAX_HEADER_BYTES) throw invalidArgument('serial record header too long');
        break;
      }
      const line = Buffer.concat([this.header, rest.subarray(0, end)]).toString('utf8');
      this.header = Buffer.alloc(0);
      rest = rest.subarray(end + 1);
      const record = this.parseHeader(line);
      if (record) complete(record);
    }
    this.consumed = base + bytes.byteLength;
    return records;
  }

  /** True when no record is half-read (a reader at a clean boundary). */
  get idle(): boolean {
    return this.need === 0 && this.header.length === 0;
  }

  private parseHeader(line: string): SerialRecord | undefined {
    const chunk = /^@(\d+) (\d+)$/.exec(line);
    if (chunk) {
      this.at = Number(chunk[1]);
      this.need = Number(chunk[2]);
      // A zero-length chunk has no payload to wait for.
      return this.need === 0 ? { kind: 'chunk', at: this.at, data: Buffer.alloc(0) } : undefined;
    }
    const event = /^!(\d+) (\S+) ?(.*)$/.exec(line);
    if (event) return { kind: 'event', at: Number(event[1]), event: event[2]!, detail: event[3]! };
    throw invalidArgument(`not a serial record header: ${JSON.stringify(line.slice(0, 80))}`);
  }

  private finishChunk(): SerialRecord {
    const data = this.pieces.length === 1 ? Buffer.from(this.pieces[0]!) : Buffer.concat(this.pieces);
    this.pieces = [];
    return { kind: 'chunk', at: this.at, data };
  }
}
