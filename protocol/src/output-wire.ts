/**
 * The wire encoding of StreamOutput's messages, by hand for output chunks, both ways. The
 * generated encoder grows a zero-filled buffer by doubling, copies the data into it, slices it,
 * and Buffer.from() copies it again: four passes over every byte of a piece before grpc-js frames
 * it; the generated decoder copies every chunk's data out of the message once more. Here the
 * agent's chunk costs one allocation and one copy, and the client's chunk data is a view of the
 * message grpc-js assembled. Anything else goes through the generated code.
 */
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { type JobServiceClient, JobServiceService, StreamOutputResponse } from '../gen/jiglet/v1/jobs.js';

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

/** Reads a varint at `pos`: [value, next position], or undefined past `end` or beyond 2^53. */
function getVarint(buf: Buffer, pos: number, end: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let p = pos; p < end && scale <= 2 ** 49; p++) {
    const byte = buf[p]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return Number.isSafeInteger(value) ? [value, p + 1] : undefined;
    scale *= 0x80;
  }
  return undefined;
}

/**
 * StreamOutputResponse from protobuf bytes. A plain chunk (offset, data, stream, each at most
 * once) is read here with its data a view of `buf`; anything else (the final record, unknown
 * fields, an offset past 2^53) goes to the generated decoder, so the result is always the same.
 */
export function decodeStreamOutputResponse(buf: Buffer): StreamOutputResponse {
  const fast = decodeChunk(buf);
  return fast ?? StreamOutputResponse.decode(buf);
}

function decodeChunk(buf: Buffer): StreamOutputResponse | undefined {
  if (buf.length < 2 || buf[0] !== 10) return undefined;
  const len = getVarint(buf, 1, buf.length);
  if (!len || len[1] + len[0] !== buf.length) return undefined;
  let p = len[1];
  let offset = 0;
  let data: Buffer = Buffer.alloc(0);
  let stream = 0;
  let seen = 0;
  while (p < buf.length) {
    const tag = buf[p++];
    const field = tag === 8 ? 1 : tag === 18 ? 2 : tag === 24 ? 4 : 0;
    if (field === 0 || seen & field) return undefined;
    seen |= field;
    const v = getVarint(buf, p, buf.length);
    if (!v) return undefined;
    p = v[1];
    if (tag === 8) offset = v[0];
    else if (tag === 24) {
      if (v[0] > 0x7fffffff) return undefined;
      stream = v[0];
    } else {
      if (p + v[0] > buf.length) return undefined;
      data = buf.subarray(p, p + v[0]);
      p += v[0];
    }
  }
  return { chunk: { offset: BigInt(offset), data, stream } };
}

/** JobService's definition with StreamOutput's responses coded by the functions above. */
export const JobServiceWire: typeof JobServiceService = {
  ...JobServiceService,
  streamOutput: {
    ...JobServiceService.streamOutput,
    responseSerialize: encodeStreamOutputResponse,
    responseDeserialize: decodeStreamOutputResponse,
  },
};

/** The generated JobServiceClient, on JobServiceWire. */
export const JobServiceWireClient = makeGenericClientConstructor(
  JobServiceWire,
  'jiglet.v1.JobService',
) as unknown as typeof JobServiceClient;
