/**
 * The wire encoding of StreamOutput's messages, by hand for output chunks, both ways. The
 * generated encoder grows a zero-filled buffer by doubling, copies the data into it, slices it,
 * and Buffer.from() copies it again: four passes over every byte of a piece before grpc-js frames
 * it; the generated decoder copies every chunk's data out of the message once more. Here the
 * agent's chunk costs one allocation and one copy, and the client's chunk data is a view of the
 * message grpc-js assembled (a copy for a small chunk, see compact()). Anything else goes
 * through the generated code.
 */
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import {
  type JobServiceClient,
  JobServiceService,
  type OutputChunk,
  StreamOutputResponse,
} from '../gen/jiglet/v1/jobs.js';
import { encodeChunkMessage, getVarint, readFlatFields } from './wire-chunk.js';

/** Where a response made by outputPiece() keeps its encoded bytes. */
const ENCODED = Symbol('encoded output piece');

/** A chunk response whose bytes are already encoded (see outputPiece). */
export type EncodedStreamOutputResponse = StreamOutputResponse & {
  chunk: OutputChunk;
  readonly [ENCODED]: Buffer;
};

/**
 * A chunk response for `length` bytes at `offset` of `stream`, encoded in advance: `chunk.data`
 * is a view of the encoded message for the caller to fill (the output log read straight into
 * it), and the serializer then sends the message as it is, without the copy
 * encodeStreamOutputResponse() makes. The caller must fill all of it, or send a response of its
 * own instead.
 */
export function outputPiece(offset: number, length: number, stream: number): EncodedStreamOutputResponse {
  const { out, dataAt } = encodeChunkMessage(10, offset, length, stream);
  return {
    chunk: { offset: BigInt(offset), data: out.subarray(dataAt, dataAt + length), stream },
    [ENCODED]: out,
  };
}

/** StreamOutputResponse as protobuf bytes, byte-identical to the generated encoder's. */
export function encodeStreamOutputResponse(
  message: StreamOutputResponse | EncodedStreamOutputResponse,
): Buffer {
  if (ENCODED in message) return message[ENCODED];
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
  const { out, dataAt } = encodeChunkMessage(10, offset, chunk.data.length, chunk.stream);
  out.set(chunk.data, dataAt);
  return out;
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
  const fields = readFlatFields(buf, len[1], buf.length, [8, 18, 24]);
  const stream = fields?.get(24) ?? 0;
  if (!fields || (stream as number) > 0x7fffffff) return undefined;
  return {
    chunk: {
      offset: BigInt((fields.get(8) as number | undefined) ?? 0),
      data: compact((fields.get(18) as Buffer | undefined) ?? Buffer.alloc(0)),
      stream: stream as number,
    },
  };
}

/**
 * The chunk's data as a view, unless that would keep a much larger buffer alive: grpc-js cuts a
 * message that arrived inside one network read out of that read's buffer, so a serial line
 * could hold a whole read. A caller that keeps chunks (a console log collected in memory) then
 * keeps only their bytes. A big chunk (a fast job's output) is its own buffer and stays a view.
 */
function compact(data: Buffer): Buffer {
  return data.buffer.byteLength > 2 * data.length ? Buffer.from(data) : data;
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
