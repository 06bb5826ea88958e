/**
 * What a finished `jig-driver` job printed, read back from its output log and typed by protocol's
 * driver-events.ts: for a power job the whole (tiny) log, for a flash job only its end.
 */
import {
  type DriverFailureSummary,
  readDriverText,
  summarizeDriverFailure,
} from '../../../protocol/src/driver-events.js';
import type { JobView } from '../jobs/supervisor.js';

/** Largest piece read at once. */
const READ_BYTES = 64 * 1024;
/** How much of a long log's end holds a failed driver's last steps and words. */
export const FAILURE_TAIL_BYTES = 64 * 1024;

/** The job's stdout and stderr as text; with `tailBytes`, only what its last bytes hold. */
export async function readDriverOutput(
  job: JobView,
  tailBytes = Number.POSITIVE_INFINITY,
): Promise<{ stdout: string; stderr: string }> {
  const log = job.output();
  const release = log.acquire();
  try {
    let stdout = '';
    let stderr = '';
    let offset = Math.max(log.start, log.length - tailBytes);
    while (offset < log.length) {
      // A read stops at a stream boundary.
      const piece = await log.read(offset, Math.min(READ_BYTES, log.length - offset));
      if (piece.data.length === 0) break;
      offset += piece.data.length;
      if (piece.stream === 'stdout') stdout += piece.data.toString('utf8');
      else stderr += piece.data.toString('utf8');
    }
    return { stdout, stderr };
  } finally {
    release();
  }
}

/** What a failed driver job said: its own error code and words (see DriverFailureSummary). */
export async function driverJobFailure(job: JobView): Promise<DriverFailureSummary> {
  const { stderr } = await readDriverOutput(job, FAILURE_TAIL_BYTES);
  return summarizeDriverFailure(readDriverText(stderr));
}
