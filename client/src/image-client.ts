/**
 * The image half of the client library: hash an image locally, upload only what the agent lacks
 * (resuming a broken upload), list and remove cached images. Reached as `client.images`.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { type ChannelCredentials, type Client, type Interceptor, Metadata } from '@grpc/grpc-js';
import type {
  Image,
  ImageServiceClient,
  ListImagesResponse,
  StatImageResponse,
  UploadImageRequest,
  UploadImageResponse,
} from '../../protocol/gen/jiglet/v1/images.js';
import { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { ImageServiceWireClient, uploadPiece } from '../../protocol/src/upload-wire.js';
import { callOptions, unaryCall } from './unary-call.js';

export type { Image } from '../../protocol/gen/jiglet/v1/images.js';

/** Bytes per upload message: large enough for throughput, well under the 8 MiB message limit. */
const CHUNK_BYTES = 1024 * 1024;

/** Progress of hashing or uploading. */
export interface TransferProgress {
  phase: 'hash' | 'upload';
  done: number;
  total: number;
}

/** What an upload did. */
export interface UploadResult {
  sha256: string;
  size: number;
  /** Bytes sent by this call: 0 when the agent had the image, less than size after a resume. */
  sent: number;
  /** Where the upload started (a resumed upload starts past 0). */
  resumedAt: number;
}

/** Bytes read at once to hash a file: two such buffers, one filling while the other is hashed. */
const HASH_READ_BYTES = 4 * 1024 * 1024;

/**
 * SHA-256 (hex) of a file. The next piece is read (on the thread pool) while this one is
 * hashed, into two buffers used in turn: 0.29 → 0.25 s for a 435 MB `.gz` here, where the hash
 * itself runs at 1.8 GB/s, and no garbage per MiB.
 */
export async function hashFile(path: string, onProgress?: (p: TransferProgress) => void): Promise<string> {
  const file = await open(path, 'r');
  let reading: Promise<{ bytesRead: number }> | undefined;
  try {
    const total = (await file.stat()).size;
    const hash = createHash('sha256');
    let current = Buffer.allocUnsafe(HASH_READ_BYTES);
    let next = Buffer.allocUnsafe(HASH_READ_BYTES);
    let done = 0;
    reading = file.read(current, 0, HASH_READ_BYTES, 0);
    for (;;) {
      const bytesRead: number = (await reading).bytesRead;
      reading = undefined;
      if (bytesRead === 0) break;
      reading = file.read(next, 0, HASH_READ_BYTES, done + bytesRead);
      hash.update(current.subarray(0, bytesRead));
      done += bytesRead;
      onProgress?.({ phase: 'hash', done, total });
      [current, next] = [next, current];
    }
    return hash.digest('hex');
  } finally {
    // A read still under way must end before its file is closed under it.
    await reading?.catch(() => undefined);
    await file.close();
  }
}

/**
 * Reads `path` from `start` to `size` straight into encoded upload messages (uploadPiece) and
 * hands them to `send` in order, reading the next piece while one is being sent. A file that
 * got shorter meanwhile ends in an error, as the agent would refuse its hash anyway.
 */
async function sendPieces(
  path: string,
  start: number,
  size: number,
  send: (piece: UploadImageRequest) => Promise<void>,
): Promise<void> {
  if (start >= size) return;
  const file = await open(path, 'r');
  const read = async (offset: number): Promise<UploadImageRequest> => {
    const piece = uploadPiece(offset, Math.min(CHUNK_BYTES, size - offset));
    const into = piece.data.data;
    for (let got = 0; got < into.length; ) {
      const { bytesRead } = await file.read(into, got, into.length - got, offset + got);
      if (bytesRead === 0)
        throw new JigletError(
          'JIGLET_E_FAILED_PRECONDITION',
          `${path} ended at ${offset + got} of ${size} bytes while it was uploaded: something is changing it; upload it again once it is written`,
        );
      got += bytesRead;
    }
    return piece;
  };
  // A read ahead may fail while a send waits for 'drain': it is marked handled at once (or the
  // process would end on an unhandled rejection) and its error surfaces when it is awaited.
  const readAhead = (offset: number): Promise<UploadImageRequest> => {
    const reading = read(offset);
    reading.catch(() => undefined);
    return reading;
  };
  let next: Promise<UploadImageRequest> | undefined = readAhead(start);
  try {
    for (let offset = start; offset < size; ) {
      const piece = await next!;
      offset += piece.data!.data.length;
      next = offset < size ? readAhead(offset) : undefined;
      await send(piece);
    }
  } finally {
    await next?.catch(() => undefined);
    await file.close();
  }
}

/** The ImageService client. */
export class ImageClient {
  readonly #stub: ImageServiceClient;

  constructor(
    server: string,
    creds: ChannelCredentials,
    channel: ReturnType<Client['getChannel']>,
    interceptors: Interceptor[] = [],
  ) {
    this.#stub = new ImageServiceWireClient(server, creds, { channelOverride: channel, interceptors });
  }

  /** Whether the agent has the image, and how much of an upload it kept. */
  async stat(sha256: string): Promise<{ present: boolean; size: number; received: number }> {
    const res = await unaryCall<StatImageResponse>((cb) =>
      this.#stub.statImage({ sha256 }, new Metadata(), callOptions(), cb),
    );
    return { present: res.present, size: Number(res.size), received: Number(res.received) };
  }

  /**
   * Makes sure the agent has the file: hashes it, asks, and sends only what is missing. A broken
   * upload is resumed by calling this again. `sha256` skips the local hashing when known.
   */
  async upload(
    path: string,
    opts: { sha256?: string; onProgress?: (p: TransferProgress) => void; signal?: AbortSignal } = {},
  ): Promise<UploadResult> {
    const size = statSync(path).size;
    const sha256 = opts.sha256 ?? (await hashFile(path, opts.onProgress));
    const stat = await this.stat(sha256);
    if (stat.present) return { sha256, size, sent: 0, resumedAt: size };
    const resumedAt = stat.received;
    let call!: ReturnType<ImageServiceClient['uploadImage']>;
    const result = new Promise<UploadImageResponse>((resolve, reject) => {
      call = this.#stub.uploadImage((err, res) =>
        err ? reject(fromGrpcError(err)) : resolve(res as UploadImageResponse),
      );
    });
    result.catch(() => undefined);
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      call.write({ start: { sha256, size: BigInt(size), name: basename(path) } });
      try {
        await sendPieces(path, resumedAt, size, async (piece) => {
          if (!call.write(piece)) await Promise.race([once(call, 'drain'), result]);
          opts.onProgress?.({
            phase: 'upload',
            done: Number(piece.data!.offset) + piece.data!.data.length,
            total: size,
          });
        });
      } catch (err) {
        // Reading the file failed (or a callback threw): end the call, so the agent ends this
        // upload and keeps what it received for a resume, instead of waiting for more.
        call.cancel();
        throw err;
      }
      call.end();
      const res = await result;
      return { sha256, size, sent: Number(res.bytesReceived), resumedAt };
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Cached images, most recently used first, with the cache's limit and use. */
  async list(): Promise<{ images: Image[]; limitBytes: number; usedBytes: number }> {
    const res = await unaryCall<ListImagesResponse>((cb) =>
      this.#stub.listImages({}, new Metadata(), callOptions(), cb),
    );
    return { images: res.images, limitBytes: Number(res.limitBytes), usedBytes: Number(res.usedBytes) };
  }

  /** Removes a cached image (refused while a flash reads it). */
  async remove(sha256: string): Promise<void> {
    await unaryCall((cb) => this.#stub.removeImage({ sha256 }, new Metadata(), callOptions(), cb));
  }
}
