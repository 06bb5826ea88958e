/**
 * Flashing as CI runs it: make sure the agent has the image (and bmap), start the flash job, and
 * follow its progress lines (protocol's driver-events.ts) until it ends. One function over the three services, so jigctl
 * and the HIL suites flash the same way. A first flash (the image not cached yet, as for every new
 * build) uploads and flashes at once: the agent writes the image as it arrives
 * (FlashRequest.follow_upload), so the upload no longer comes on top of the flash.
 */
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import type { DriverFailure, FlashProgress } from '../../protocol/src/driver-events.js';
import { DriverFailedError, type ErrorCode, JigletError } from '../../protocol/src/errors.js';
import { cachedSha256 } from './hash-cache.js';
import { hashFile, type TransferProgress, type UploadResult } from './image-client.js';
import type { JigletClient } from './jiglet-client.js';

/** One progress report of a flash job. */
export type { FlashProgress };

/** Everything a flash reports while it runs. */
export type FlashEvent =
  | { type: 'transfer'; progress: TransferProgress }
  | { type: 'flash'; progress: FlashProgress };

/** What a completed flash did. */
export interface FlashResult {
  jobId: string;
  imageSha256: string;
  /** Bytes uploaded by this call (0 on a cache hit). */
  uploaded: number;
  /** The last progress line of the job. */
  last: FlashProgress | undefined;
}

/** Thrown when the flash job fails; carries its job id, the reason it printed and its code. */
export class FlashFailedError extends DriverFailedError {
  /** Creates the error for flash job `jobId`. */
  constructor(
    override readonly jobId: string,
    reason: string,
    driverCode?: ErrorCode,
  ) {
    super(reason, { jobId, driverCode });
    this.name = 'FlashFailedError';
  }
}

/** Uploads what is missing, flashes, and follows the job to its end. */
export async function flashDut(
  client: JigletClient,
  dut: string,
  image: string,
  opts: { bmap?: string; verify?: boolean; onEvent?: (e: FlashEvent) => void; signal?: AbortSignal } = {},
): Promise<FlashResult> {
  const onProgress = (progress: TransferProgress): void => opts.onEvent?.({ type: 'transfer', progress });
  const bmap = opts.bmap ? await client.images.upload(opts.bmap, { signal: opts.signal }) : undefined;
  const sha256 = await cachedSha256(image, () => hashFile(image, onProgress));
  const cached = (await client.images.stat(sha256)).present;
  // The upload runs beside the flash; stopping it does not lose what was sent (it resumes).
  const uploadStop = new AbortController();
  const stopUpload = (): void => uploadStop.abort();
  opts.signal?.addEventListener('abort', stopUpload, { once: true });
  // Another client uploading the same image now (the same build flashed onto several DUTs at
  // once) is as good as our own upload: the flash follows whichever upload there is.
  const upload = client.images
    .upload(image, { sha256, onProgress, signal: uploadStop.signal })
    .catch((err: unknown): UploadResult => {
      if (!cached && err instanceof JigletError && err.code === 'JIGLET_E_ALREADY_EXISTS')
        return { sha256, size: 0, sent: 0, resumedAt: 0 };
      throw err;
    });
  let uploadFailure: unknown;
  let uploadSettled = false;
  upload.then(
    () => {
      uploadSettled = true;
    },
    (err: unknown) => {
      uploadSettled = true;
      uploadFailure = err;
    },
  );
  /**
   * What to throw when the flash failed with `err`: the upload's own failure if it had one (it
   * says more than the flash it stopped); else `err`, once an upload still running is stopped.
   */
  const failure = async (err: unknown): Promise<unknown> => {
    if (uploadFailure !== undefined) return uploadFailure;
    if (!uploadSettled) {
      uploadStop.abort();
      await upload.catch(() => undefined);
    }
    return err;
  };
  try {
    if (cached) await upload;
    const started = await client.jig.flash(dut, {
      imageSha256: sha256,
      bmapSha256: bmap?.sha256,
      verify: opts.verify ?? true,
      followUpload: !cached,
    });
    return await followFlash(client, dut, started.jobId, opts, async (last) => {
      const uploaded = await upload;
      return { jobId: started.jobId, imageSha256: sha256, uploaded: uploaded.sent, last };
    });
  } catch (err) {
    throw await failure(err);
  } finally {
    opts.signal?.removeEventListener('abort', stopUpload);
  }
}

/** Follows flash job `jobId` to its end; `done` makes the result of a job that succeeded. */
async function followFlash(
  client: JigletClient,
  dut: string,
  jobId: string,
  opts: { onEvent?: (e: FlashEvent) => void; signal?: AbortSignal },
  done: (last: FlashProgress | undefined) => Promise<FlashResult>,
): Promise<FlashResult> {
  // Loaded here, not with the client: its schemas bring zod, which no other jigctl command needs.
  const { DriverEventReader } = await import('../../protocol/src/driver-events.js');
  let last: FlashProgress | undefined;
  const stdout = new DriverEventReader();
  const stderr = new DriverEventReader();
  // The flasher's last words (its human line) and its coded failure, if it printed one.
  let lastSaid: string | undefined;
  let failure: DriverFailure | undefined;
  const stop = (): void => {
    client.stop(jobId, 2000).catch(() => undefined);
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  try {
    for await (const event of client.output(jobId, { follow: true })) {
      if (event.type === 'finished') {
        const job = event.job;
        if (job.state === JobState.JOB_STATE_EXITED && job.exitCode === 0) return await done(last);
        for (const said of stderr.end())
          if (said.kind === 'text' && said.text.trim()) lastSaid = said.text.trim();
        const reason = lastSaid ?? failure?.message ?? job.error ?? `job ${job.state}`;
        throw new FlashFailedError(
          jobId,
          `flash of ${dut} failed: ${reason.replace(/^jig-driver: /, '')} (job ${jobId})`,
          failure?.code,
        );
      }
      if (event.stream === 'stderr') {
        for (const said of stderr.push(event.data)) {
          if (said.kind === 'failed') failure = said.failure;
          else if (said.kind === 'text' && said.text.trim()) lastSaid = said.text.trim();
        }
        continue;
      }
      for (const line of stdout.push(event.data)) {
        if (line.kind !== 'flash') continue;
        last = line.progress;
        opts.onEvent?.({ type: 'flash', progress: line.progress });
      }
    }
    throw new FlashFailedError(jobId, `the output of flash job ${jobId} ended before the job did`);
  } finally {
    opts.signal?.removeEventListener('abort', stop);
  }
}
