/**
 * The content-addressed image cache: `<state>/images/<sha256>/image` plus a small meta.json, and
 * unfinished uploads in `<state>/images/partial/<sha256>`, kept so a broken upload resumes. The
 * size limit is kept by evicting the least recently used images, never one a flash is reading.
 * A flash may also read an upload while it arrives (`follow`, arriving-uploads.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { failedPrecondition, invalidArgument, JigletError, notFound } from '../../../protocol/src/errors.js';
import { readJsonIfPresent, writeJsonAtomic } from '../state/atomic-json.js';
import { type ArrivingUpload, ArrivingUploads } from './arriving-uploads.js';

/** Default size limit of the cache. */
export const DEFAULT_CACHE_BYTES = 20 * 1024 ** 3;
const SHA256 = /^[0-9a-f]{64}$/;
const META = 'meta.json';
const IMAGE = 'image';

/** A cached image. */
export interface CachedImage {
  sha256: string;
  size: number;
  name: string;
  addedAt: number;
  lastUsedAt: number;
  /** Flash jobs reading it now. */
  inUse: number;
}

type Meta = Omit<CachedImage, 'sha256' | 'inUse'>;

/** What the cache knows about a hash. */
export interface ImageStat {
  present: boolean;
  size: number;
  /** Bytes of an unfinished upload kept for resuming. */
  received: number;
}

/** One upload in progress; write() in order, then finish() or abandon(). */
export interface UploadSession {
  readonly received: number;
  write(offset: number, data: Buffer): Promise<void>;
  /** Checks size and hash and moves the image into the cache. */
  finish(): Promise<CachedImage>;
  /** Ends the call's hold on the upload; the bytes received are kept for a resume. */
  abandon(): Promise<void>;
}

/** Throws INVALID_ARGUMENT unless `sha256` is 64 lower-case hex digits. */
export function checkSha256(sha256: string): string {
  if (!SHA256.test(sha256)) {
    throw invalidArgument(`"${sha256.slice(0, 80)}" is not a SHA-256 (64 lower-case hex digits)`);
  }
  return sha256;
}

/** The image cache of one agent. */
export class ImageCache {
  readonly limitBytes: number;
  readonly #dir: string;
  readonly #partialDir: string;
  readonly #images = new Map<string, CachedImage>();
  readonly #uploading = new Set<string>();
  readonly #arriving: ArrivingUploads;
  readonly #log: Logger;

  constructor(opts: { stateDir: string; limitBytes?: number; log: Logger }) {
    this.limitBytes = opts.limitBytes ?? DEFAULT_CACHE_BYTES;
    this.#dir = join(opts.stateDir, 'images');
    this.#partialDir = join(this.#dir, 'partial');
    this.#log = opts.log;
    mkdirSync(this.#partialDir, { recursive: true });
    this.#arriving = new ArrivingUploads(join(this.#dir, 'arriving'));
    for (const entry of readdirSync(this.#dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !SHA256.test(entry.name)) continue;
      try {
        const meta = readJsonIfPresent<Meta>(join(this.#dir, entry.name, META));
        const size = statSync(join(this.#dir, entry.name, IMAGE)).size;
        if (!meta || meta.size !== size) throw new Error('meta.json missing or size differs');
        this.#images.set(entry.name, { ...meta, sha256: entry.name, inUse: 0 });
      } catch (err) {
        // A half-moved image, or one whose metadata was damaged, is worth less than the space it
        // takes (a bounded cache would keep a moved-aside copy forever): drop it, `jigctl flash`
        // uploads it again.
        this.#log.error(
          { image: entry.name, err },
          `cached image ${entry.name} is unreadable (${(err as Error).message}); dropped it from the cache, the next flash uploads it again`,
        );
        rmSync(join(this.#dir, entry.name), { recursive: true, force: true });
      }
    }
  }

  /** Bytes held by complete images. */
  get usedBytes(): number {
    let used = 0;
    for (const image of this.#images.values()) used += image.size;
    return used;
  }

  /** Images, most recently used first. */
  list(): CachedImage[] {
    return [...this.#images.values()].sort((a, b) => b.lastUsedAt - a.lastUsedAt);
  }

  stat(sha256: string): ImageStat {
    checkSha256(sha256);
    const image = this.#images.get(sha256);
    if (image) return { present: true, size: image.size, received: image.size };
    return { present: false, size: 0, received: this.#partialSize(sha256) };
  }

  /** The image, or NOT_FOUND saying how to get it there. */
  get(sha256: string): CachedImage {
    const image = this.#images.get(checkSha256(sha256));
    if (!image)
      throw notFound(`the agent has no image ${sha256.slice(0, 12)}…; upload it first (jigctl flash does)`);
    return image;
  }

  /** True when the image is cached (complete and checked). */
  has(sha256: string): boolean {
    return this.#images.has(checkSha256(sha256));
  }

  /**
   * A hold on the upload of `sha256` while it arrives, waiting up to `waitMs` for it to begin;
   * undefined when none began (or it completed meanwhile: then the image is cached).
   */
  follow(
    sha256: string,
    opts: { waitMs: number; signal?: AbortSignal },
  ): Promise<ArrivingUpload | undefined> {
    return this.#arriving.follow(checkSha256(sha256), opts);
  }

  /** Path of a cached image's bytes. */
  pathOf(sha256: string): string {
    this.get(sha256);
    return join(this.#dir, sha256, IMAGE);
  }

  /** Marks an image in use (not evictable, not removable) until the returned release is called. */
  pin(sha256: string): () => void {
    const image = this.get(sha256);
    image.inUse++;
    image.lastUsedAt = Date.now();
    this.#saveMeta(image);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      image.inUse--;
    };
  }

  /** Deletes an image; refused while a flash reads it. */
  remove(sha256: string): void {
    const image = this.get(sha256);
    if (image.inUse > 0) {
      throw failedPrecondition(
        `image ${sha256.slice(0, 12)}… is being flashed by ${image.inUse} job(s); remove it when they are done`,
      );
    }
    this.#images.delete(sha256);
    rmSync(join(this.#dir, sha256), { recursive: true, force: true });
  }

  /**
   * Starts or resumes an upload. Undefined when the image is already cached (nothing to send).
   * One upload per hash at a time; a second is refused while the first holds it.
   */
  async begin(start: { sha256: string; size: number; name: string }): Promise<UploadSession | undefined> {
    const sha256 = checkSha256(start.sha256);
    if (this.#images.has(sha256)) return undefined;
    if (!Number.isSafeInteger(start.size) || start.size <= 0)
      throw invalidArgument('an image size of 1 byte or more is required');
    if (start.size > this.limitBytes) {
      throw new JigletError(
        'JIGLET_E_RESOURCE_EXHAUSTED',
        `the image is ${start.size} bytes; the agent's image cache holds at most ${this.limitBytes}`,
      );
    }
    if (this.#uploading.has(sha256)) {
      // ALREADY_EXISTS, not FAILED_PRECONDITION: a client flashing the same new image onto
      // another DUT at the same time follows that upload instead (flash-client.ts).
      throw new JigletError(
        'JIGLET_E_ALREADY_EXISTS',
        `an upload of ${sha256.slice(0, 12)}… is already in progress; flash it with follow_upload, or resume the upload when it ends`,
      );
    }
    this.#uploading.add(sha256);
    try {
      this.#makeRoom(start.size);
      const partial = join(this.#partialDir, sha256);
      let received = this.#partialSize(sha256);
      if (received > start.size) {
        rmSync(partial, { force: true });
        received = 0;
      }
      // The hash covers the kept bytes too, so a resumed upload is checked as a whole.
      const hash = createHash('sha256');
      if (received > 0) {
        for await (const chunk of createReadStream(partial, { end: received - 1 }))
          hash.update(chunk as Buffer);
      }
      const file = await open(partial, received > 0 ? 'r+' : 'w');
      this.#arriving.started(sha256, partial, start.size, start.name);
      return this.#session({ sha256, size: start.size, name: start.name, partial, file, hash, received });
    } catch (err) {
      this.#uploading.delete(sha256);
      throw noSpace(err);
    }
  }

  #session(s: {
    sha256: string;
    size: number;
    name: string;
    partial: string;
    file: FileHandle;
    hash: Hash;
    received: number;
  }): UploadSession {
    let received = s.received;
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      this.#uploading.delete(s.sha256);
      await s.file.close();
    };
    return {
      get received() {
        return received;
      },
      write: async (offset, data) => {
        if (offset > received) {
          throw new JigletError(
            'JIGLET_E_OUT_OF_RANGE',
            `upload data at offset ${offset}, but the agent has ${received} bytes of ${s.sha256.slice(0, 12)}…; continue from ${received}`,
          );
        }
        // A resume may start below what the agent has: the client asked where to continue while
        // an earlier call of this upload was still writing. The bytes the agent has are skipped;
        // the hash over the whole image at the end still checks them.
        const fresh = data.subarray(Math.min(received - offset, data.length));
        if (received + fresh.length > s.size)
          throw invalidArgument(`more data than the announced ${s.size} bytes`);
        if (fresh.length === 0) return;
        try {
          await s.file.write(fresh, 0, fresh.length, received);
        } catch (err) {
          throw noSpace(err);
        }
        s.hash.update(fresh);
        received += fresh.length;
      },
      finish: async () => {
        if (received !== s.size) {
          throw failedPrecondition(
            `the upload ended at ${received} of ${s.size} bytes; resume it from ${received}`,
          );
        }
        await s.file.sync();
        await close();
        const actual = s.hash.digest('hex');
        if (actual !== s.sha256) {
          rmSync(s.partial, { force: true });
          const error = invalidArgument(
            `the uploaded bytes hash to ${actual}, not ${s.sha256}: the image changed or was damaged in transit; upload it again`,
          );
          this.#arriving.ended(s.sha256, error);
          throw error;
        }
        const dir = join(this.#dir, s.sha256);
        mkdirSync(dir, { recursive: true });
        renameSync(s.partial, join(dir, IMAGE));
        this.#arriving.ended(s.sha256);
        const now = Date.now();
        const image: CachedImage = {
          sha256: s.sha256,
          size: s.size,
          name: s.name,
          addedAt: now,
          lastUsedAt: now,
          inUse: 0,
        };
        this.#saveMeta(image);
        this.#images.set(s.sha256, image);
        this.#log.info({ image: s.sha256, size: s.size, name: s.name }, 'image cached');
        return image;
      },
      abandon: async () => {
        await close();
        this.#arriving.ended(
          s.sha256,
          new JigletError(
            'JIGLET_E_UNAVAILABLE',
            `the upload of ${s.name || s.sha256.slice(0, 12)} ended at ${received} of ${s.size} bytes`,
          ),
        );
      },
    };
  }

  /** Evicts least recently used, unpinned images until `incoming` more bytes fit. */
  #makeRoom(incoming: number): void {
    let used = this.usedBytes;
    if (used + incoming <= this.limitBytes) return;
    for (const image of [...this.#images.values()].sort((a, b) => a.lastUsedAt - b.lastUsedAt)) {
      if (used + incoming <= this.limitBytes) break;
      if (image.inUse > 0) continue;
      this.remove(image.sha256);
      used -= image.size;
      this.#log.info({ image: image.sha256, size: image.size }, 'evicted least recently used image');
    }
    if (used + incoming > this.limitBytes) {
      throw new JigletError(
        'JIGLET_E_RESOURCE_EXHAUSTED',
        `the image cache (${this.limitBytes} bytes) is full of images being flashed; try again when they are done`,
      );
    }
  }

  #partialSize(sha256: string): number {
    try {
      return statSync(join(this.#partialDir, sha256)).size;
    } catch {
      return 0;
    }
  }

  #saveMeta(image: CachedImage): void {
    const { sha256, inUse: _inUse, ...meta } = image;
    writeJsonAtomic(join(this.#dir, sha256, META), meta);
  }
}

function noSpace(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new JigletError(
      'JIGLET_E_RESOURCE_EXHAUSTED',
      'the disk holding the image cache is full; the bytes received so far are kept for a resume',
    );
  }
  return err;
}
