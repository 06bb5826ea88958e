/**
 * Flashing as CI runs it: make sure the agent has the image (and bmap), start the flash job, and
 * follow its progress lines (protocol's driver-events.ts) until it ends. One function over the three services, so jigctl
 * and the HIL suites flash the same way.
 */
import type { FlashResponse } from '../../protocol/gen/jiglet/v1/jig.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import type { DriverFailure, FlashProgress } from '../../protocol/src/driver-events.js';
import { DriverFailedError, type ErrorCode } from '../../protocol/src/errors.js';
import type { TransferProgress } from './image-client.js';
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
  // Loaded here, not with the client: its schemas bring zod, which no other jigctl command needs.
  const { DriverEventReader } = await import('../../protocol/src/driver-events.js');
  const uploaded = await client.images.upload(image, { onProgress, signal: opts.signal });
  const bmap = opts.bmap ? await client.images.upload(opts.bmap, { signal: opts.signal }) : undefined;
  const started: FlashResponse = await client.jig.flash(dut, {
    imageSha256: uploaded.sha256,
    bmapSha256: bmap?.sha256,
    verify: opts.verify ?? true,
  });
  const jobId = started.jobId;
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
        if (job.state === JobState.JOB_STATE_EXITED && job.exitCode === 0) {
          return { jobId, imageSha256: uploaded.sha256, uploaded: uploaded.sent, last };
        }
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
