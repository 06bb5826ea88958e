/**
 * Flashing as CI runs it: make sure the agent has the image (and bmap), start the flash job, and
 * follow its JSON progress lines until it ends. One function over the three services, so jigctl
 * and the HIL suites flash the same way.
 */
import type { FlashResponse } from '../../protocol/gen/jiglet/v1/jig.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';
import { JigletError } from '../../protocol/src/errors.js';
import type { TransferProgress } from './image-client.js';
import type { JigletClient } from './jiglet-client.js';

/** One progress line of a flash job (see jig-drivers' flash progress). */
export interface FlashProgress {
  phase: string;
  bytesWritten: number;
  bytesRead: number;
  totalBytes: number | null;
  mbPerS: number;
  etaS: number | null;
}

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

/** Thrown when the flash job fails; carries its job id and the reason it printed. */
export class FlashFailedError extends JigletError {
  constructor(
    readonly jobId: string,
    reason: string,
  ) {
    super('JIGLET_E_DRIVER_FAILED', reason);
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
  const uploaded = await client.images.upload(image, { onProgress, signal: opts.signal });
  const bmap = opts.bmap ? await client.images.upload(opts.bmap, { signal: opts.signal }) : undefined;
  const started: FlashResponse = await client.jig.flash(dut, {
    imageSha256: uploaded.sha256,
    bmapSha256: bmap?.sha256,
    verify: opts.verify ?? true,
  });
  const jobId = started.jobId;
  let last: FlashProgress | undefined;
  let stdoutLine = '';
  let stderr = '';
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
        const reason = stderr.trim().split('\n').filter(Boolean).at(-1) ?? job.error ?? `job ${job.state}`;
        throw new FlashFailedError(
          jobId,
          `flash of ${dut} failed: ${reason.replace(/^jig-driver: /, '')} (job ${jobId})`,
        );
      }
      if (event.stream === 'stderr') {
        stderr = (stderr + event.data.toString('utf8')).slice(-8192);
        continue;
      }
      stdoutLine += event.data.toString('utf8');
      const lines = stdoutLine.split('\n');
      stdoutLine = lines.pop() ?? '';
      for (const line of lines) {
        const progress = parseProgress(line);
        if (progress) {
          last = progress;
          opts.onEvent?.({ type: 'flash', progress });
        }
      }
    }
    throw new FlashFailedError(jobId, `the output of flash job ${jobId} ended before the job did`);
  } finally {
    opts.signal?.removeEventListener('abort', stop);
  }
}

function parseProgress(line: string): FlashProgress | undefined {
  try {
    const parsed = JSON.parse(line) as { flash?: FlashProgress };
    return parsed.flash;
  } catch {
    return undefined;
  }
}
