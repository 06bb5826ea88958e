/**
 * jiglet.v1.ImageService over the image cache. Uploads are written as they arrive, one message
 * at a time and in order; the call keeps receiving while up to UPLOAD_AHEAD_BYTES wait for their
 * write (so the network and the disk work at once) and is paused beyond that, so a fast client
 * cannot fill the agent's memory. A broken call keeps what was written for a resume.
 */
import type { ServerReadableStream, sendUnaryData } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type {
  Image,
  ImageServiceServer,
  UploadImageRequest,
  UploadImageResponse,
} from '../../../protocol/gen/jiglet/v1/images.js';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import type { CachedImage, ImageCache, UploadSession } from '../images/image-cache.js';
import { statusFor, unary } from './respond.js';

/** Longest image name kept. */
const MAX_NAME = 255;
/** Upload bytes received and not yet written that make the agent stop reading the call. */
const UPLOAD_AHEAD_BYTES = 8 * 1024 * 1024;

/** The wire form of a cached image. */
export function toWireImage(image: CachedImage): Image {
  return {
    sha256: image.sha256,
    size: BigInt(image.size),
    name: image.name,
    added: new Date(image.addedAt),
    lastUsed: new Date(image.lastUsedAt),
    inUse: image.inUse,
  };
}

/** Builds the ImageService handlers. */
export function imageService(cache: ImageCache, log: Logger): ImageServiceServer {
  return {
    statImage: unary(log, 'StatImage', async (call) => {
      const stat = cache.stat(call.request.sha256);
      return { present: stat.present, size: BigInt(stat.size), received: BigInt(stat.received) };
    }),
    listImages: unary(log, 'ListImages', async () => ({
      images: cache.list().map(toWireImage),
      limitBytes: BigInt(cache.limitBytes),
      usedBytes: BigInt(cache.usedBytes),
    })),
    removeImage: unary(log, 'RemoveImage', async (call) => {
      cache.remove(call.request.sha256);
      return {};
    }),
    uploadImage: (call, callback) => upload(call, callback, cache, log),
  };
}

function upload(
  call: ServerReadableStream<UploadImageRequest, UploadImageResponse>,
  callback: sendUnaryData<UploadImageResponse>,
  cache: ImageCache,
  log: Logger,
): void {
  let session: UploadSession | undefined;
  let startedAt = 0;
  let initial = 0;
  let settled = false;
  // Messages are handled strictly one after another: each waits for the previous write.
  let queue: Promise<void> = Promise.resolve();
  const finish = (result: UploadImageResponse | unknown, ok: boolean): void => {
    if (settled) return;
    settled = true;
    call.off('data', onData);
    if (ok) callback(null, result as UploadImageResponse);
    else {
      session?.abandon().catch((err: unknown) => log.warn({ err }, 'could not close an abandoned upload'));
      callback(statusFor(log, 'UploadImage', result));
      call.destroy();
    }
  };
  const handle = async (msg: UploadImageRequest): Promise<void> => {
    if (settled) return;
    if (msg.start) {
      if (session || startedAt) throw invalidArgument('an upload starts once; send data messages after it');
      const size = msg.start.size;
      if (size > BigInt(Number.MAX_SAFE_INTEGER))
        throw invalidArgument(`an image of ${size} bytes is too large`);
      startedAt = Date.now();
      session = await cache.begin({
        sha256: msg.start.sha256,
        size: Number(size),
        name: msg.start.name.slice(0, MAX_NAME),
      });
      initial = session?.received ?? 0;
      if (!session) {
        // Already cached: nothing more to receive.
        finish({ image: toWireImage(cache.get(msg.start.sha256)), bytesReceived: 0n }, true);
      }
      return;
    }
    if (!msg.data) return;
    if (!session) throw invalidArgument('the first upload message must be start (sha256, size, name)');
    if (msg.data.offset > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument('offset out of range');
    // A view, not a copy: the message owns its bytes until the write is done.
    const { data } = msg.data;
    await session.write(Number(msg.data.offset), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  };
  let ahead = 0;
  const onData = (msg: UploadImageRequest): void => {
    const bytes = msg.data?.data.length ?? 0;
    ahead += bytes;
    if (ahead > UPLOAD_AHEAD_BYTES) call.pause();
    queue = queue
      .then(() => handle(msg))
      .then(
        () => {
          ahead -= bytes;
          if (!settled && ahead <= UPLOAD_AHEAD_BYTES) call.resume();
        },
        (err: unknown) => finish(err, false),
      );
  };
  call.on('data', onData);
  call.once('end', () => {
    queue = queue.then(async () => {
      if (settled) return;
      if (!session) return finish(invalidArgument('the upload sent no start message'), false);
      const before = startedAt;
      try {
        const added = session.received - initial;
        const image = await session.finish();
        log.info({ image: image.sha256, bytes: added, ms: Date.now() - before }, 'upload complete');
        finish({ image: toWireImage(image), bytesReceived: BigInt(added) }, true);
      } catch (err) {
        finish(err, false);
      }
    });
  });
  const gone = (): void => {
    queue = queue.then(() => finish(new JigletError('JIGLET_E_UNAVAILABLE', 'the client went away'), false));
  };
  call.once('cancelled', gone);
  call.once('error', gone);
}
