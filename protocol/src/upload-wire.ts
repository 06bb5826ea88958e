/**
 * The wire encoding of UploadImage's requests, by hand for the data messages, both ways (as
 * output-wire.ts does for output): the generated encoder grows a zero-filled buffer by doubling
 * and copies each 1 MiB piece several times, and the generated decoder copies it out of the
 * message again. A first flash uploads while it writes, on the same two cores, so those copies and
 * the garbage they make came straight out of the flash's time. Here the client reads its file
 * straight into a message encoded in advance (uploadPiece: one allocation, no copy), and the
 * agent's piece is a view of the message grpc-js assembled. Anything else (the start message)
 * goes through the generated code.
 */
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import {
  type ImageServiceClient,
  ImageServiceService,
  type UploadData,
  UploadImageRequest,
} from '../gen/jiglet/v1/images.js';
import { encodeChunkMessage, getVarint, readFlatFields } from './wire-chunk.js';

/** Where a request made by uploadPiece() keeps its encoded bytes. */
const ENCODED = Symbol('encoded upload piece');

/** A data request whose bytes are already encoded (see uploadPiece). */
export type EncodedUploadRequest = UploadImageRequest & { data: UploadData; readonly [ENCODED]: Buffer };

/**
 * A data request for `length` bytes at `offset`, encoded in advance: `data.data` is a view of the
 * encoded message for the caller to fill (a file read straight into it), and the serializer then
 * sends the message as it is, without the copy encodeUploadImageRequest() makes. The caller must
 * fill all of it, or send a request of its own instead.
 */
export function uploadPiece(offset: number, length: number): EncodedUploadRequest {
  const { out, dataAt } = encodeChunkMessage(18, offset, length);
  return { data: { offset: BigInt(offset), data: out.subarray(dataAt, dataAt + length) }, [ENCODED]: out };
}

/** UploadImageRequest as protobuf bytes, byte-identical to the generated encoder's. */
export function encodeUploadImageRequest(message: UploadImageRequest | EncodedUploadRequest): Buffer {
  if (ENCODED in message) return message[ENCODED];
  const piece = message.data;
  const offset = piece ? Number(piece.offset) : -1;
  if (!piece || message.start !== undefined || !Number.isSafeInteger(offset) || offset < 0) {
    return Buffer.from(UploadImageRequest.encode(message).finish());
  }
  const { out, dataAt } = encodeChunkMessage(18, offset, piece.data.length);
  out.set(piece.data, dataAt);
  return out;
}

/**
 * UploadImageRequest from protobuf bytes. A plain data message (offset and data, each at most
 * once) is read here with its data a view of `buf`; anything else goes to the generated decoder.
 */
export function decodeUploadImageRequest(buf: Buffer): UploadImageRequest {
  return decodePiece(buf) ?? UploadImageRequest.decode(buf);
}

function decodePiece(buf: Buffer): UploadImageRequest | undefined {
  if (buf.length < 2 || buf[0] !== 18) return undefined;
  const len = getVarint(buf, 1, buf.length);
  if (!len || len[1] + len[0] !== buf.length) return undefined;
  const fields = readFlatFields(buf, len[1], buf.length, [8, 18]);
  if (!fields) return undefined;
  return {
    data: {
      offset: BigInt((fields.get(8) as number | undefined) ?? 0),
      data: (fields.get(18) as Buffer | undefined) ?? Buffer.alloc(0),
    },
  };
}

/** ImageService's definition with UploadImage's requests coded by the functions above. */
export const ImageServiceWire: typeof ImageServiceService = {
  ...ImageServiceService,
  uploadImage: {
    ...ImageServiceService.uploadImage,
    requestSerialize: encodeUploadImageRequest,
    requestDeserialize: decodeUploadImageRequest,
  },
};

/** The generated ImageServiceClient, on ImageServiceWire. */
export const ImageServiceWireClient = makeGenericClientConstructor(
  ImageServiceWire,
  'jiglet.v1.ImageService',
) as unknown as typeof ImageServiceClient;
