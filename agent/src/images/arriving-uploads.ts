/**
 * Uploads in progress that a flash may read while they arrive (a first flash: the image streams
 * into the cache and onto the medium at once). A reader gets its own hard link to the partial
 * file, so the upload's final rename into the cache (or its removal after a bad hash) never pulls
 * the file from under it, and a promise of how the upload ended. Links live in one folder that is
 * emptied at start, so a crash leaves nothing behind.
 */
import { randomUUID } from 'node:crypto';
import { linkSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';

/** One reader's hold on an upload in progress. */
export interface ArrivingUpload {
  sha256: string;
  /** The file name it is uploaded under. */
  name: string;
  /** The image's size once complete. */
  size: number;
  /** The reader's own path to the file as it grows. */
  path: string;
  /** Resolves when the upload completed with the right hash; rejects when it failed or was abandoned. */
  outcome: Promise<void>;
  /** Removes the reader's link (idempotent). */
  release(): void;
}

interface Active {
  partial: string;
  name: string;
  size: number;
  outcome: Promise<void>;
  settle: { resolve: () => void; reject: (err: unknown) => void };
}

/** The uploads of one image cache that readers may follow. */
export class ArrivingUploads {
  readonly #linkDir: string;
  readonly #active = new Map<string, Active>();
  readonly #waiting = new Map<string, Set<() => void>>();

  constructor(linkDir: string) {
    this.#linkDir = linkDir;
    rmSync(linkDir, { recursive: true, force: true });
    mkdirSync(linkDir, { recursive: true });
  }

  /** An upload of `sha256` (file `name`) into `partial` began (or resumed). */
  started(sha256: string, partial: string, size: number, name: string): void {
    let settle!: Active['settle'];
    const outcome = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Readers may be gone by the time it ends; the reason is theirs to hear, not an unhandled one.
    outcome.catch(() => {});
    this.#active.set(sha256, { partial, name, size, outcome, settle });
    for (const wake of this.#waiting.get(sha256) ?? []) wake();
  }

  /**
   * The upload ended: `error` undefined when its image is in the cache. Call it in the same turn
   * as the partial file's rename or removal, so a reader never links a path that is gone.
   */
  ended(sha256: string, error?: unknown): void {
    const active = this.#active.get(sha256);
    if (!active) return;
    this.#active.delete(sha256);
    if (error === undefined) active.settle.resolve();
    else active.settle.reject(error);
  }

  /**
   * A hold on the upload of `sha256`: at once if it is under way, else as soon as one begins
   * within `waitMs` (the client starts the upload and the flash together); undefined if none did.
   */
  async follow(
    sha256: string,
    opts: { waitMs: number; signal?: AbortSignal },
  ): Promise<ArrivingUpload | undefined> {
    if (!this.#active.has(sha256)) await this.#waitForStart(sha256, opts);
    const active = this.#active.get(sha256);
    if (!active) return undefined;
    const path = join(this.#linkDir, `${sha256}.${randomUUID()}`);
    linkSync(active.partial, path);
    let released = false;
    return {
      sha256,
      name: active.name,
      size: active.size,
      path,
      outcome: active.outcome,
      release: () => {
        if (released) return;
        released = true;
        rmSync(path, { force: true });
      },
    };
  }

  #waitForStart(sha256: string, opts: { waitMs: number; signal?: AbortSignal }): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiters = this.#waiting.get(sha256) ?? new Set<() => void>();
      this.#waiting.set(sha256, waiters);
      const done = (err?: unknown): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        waiters.delete(wake);
        if (waiters.size === 0) this.#waiting.delete(sha256);
        if (err === undefined) resolve();
        else reject(err);
      };
      const wake = (): void => done();
      const onAbort = (): void =>
        done(opts.signal?.reason ?? new JigletError('JIGLET_E_ABORTED', 'the caller went away'));
      const timer = setTimeout(wake, opts.waitMs);
      waiters.add(wake);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
