/**
 * The wire encoding of StreamOutput's messages, by hand for output chunks. The generated encoder
 * grows a zero-filled buffer by doubling, copies the data into it, slices it, and Buffer.from()
 * copies it again: four passes over every byte of a piece before grpc-js frames it.
 * Here a chunk costs one allocation and one copy; anything else goes through the generated code.
 */
import { JobServiceService, StreamOutputResponse } from '../../../protocol/gen/jiglet/v1/jobs.js';

/** Bytes of `value` as a protobuf varint (a non-negative safe integer). */
function varintLength(value: number): number {
  let n = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) n++;
  return n;
}

function putVarint(buf: Buffer, pos: number, value: number): number {
  let v = value;
  let p = pos;
  while (v >= 0x80) {
    buf[p++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[p++] = v;
  return p;
}

/** StreamOutputResponse as protobuf bytes, byte-identical to the generated encoder's. */
export function encodeStreamOutputResponse(message: StreamOutputResponse): Buffer {
  const chunk = message.chunk;
  const offset = chunk ? Number(chunk.offset) : -1;
  if (
    !chunk ||
    message.finished !== undefined ||
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    !Number.isInteger(chunk.stream) ||
    chunk.stream < 0
  ) {
    return Buffer.from(StreamOutputResponse.encode(message).finish());
  }
  const data = chunk.data;
  const inner =
    (offset !== 0 ? 1 + varintLength(offset) : 0) +
    (data.length !== 0 ? 1 + varintLength(data.length) + data.length : 0) +
    (chunk.stream !== 0 ? 1 + varintLength(chunk.stream) : 0);
  const out = Buffer.allocUnsafe(1 + varintLength(inner) + inner);
  let p = 0;
  out[p++] = 10; // field 1 (chunk), length-delimited
  p = putVarint(out, p, inner);
  if (offset !== 0) {
    out[p++] = 8; // field 1 (offset), varint
    p = putVarint(out, p, offset);
  }
  if (data.length !== 0) {
    out[p++] = 18; // field 2 (data), length-delimited
    p = putVarint(out, p, data.length);
    out.set(data, p);
    p += data.length;
  }
  if (chunk.stream !== 0) {
    out[p++] = 24; // field 3 (stream), varint
    p = putVarint(out, p, chunk.stream);
  }
  return out;
}

/** JobService's definition with StreamOutput's responses encoded by encodeStreamOutputResponse. */
export const JobServiceWire: typeof JobServiceService = {
  ...JobServiceService,
  streamOutput: { ...JobServiceService.streamOutput, responseSerialize: encodeStreamOutputResponse },
};
