/**
 * What a finished flash achieved, read from the end of its job's output: the flasher's last JSON
 * progress line (`done`, see protocol's driver-events.ts) carries the image bytes, and the job
 * record the wall time. The log is the source of truth already; the agent keeps no copy of it.
 */
import { type FlashProgress, parseProgressLine } from '../../../protocol/src/driver-events.js';
import type { JobView } from '../jobs/supervisor.js';

/** How much of the log's end is searched; the last progress lines are far shorter than this. */
const TAIL_BYTES = 64 * 1024;

/** One completed flash: image bytes put on the medium, and the rate over the whole job. */
export interface FlashThroughput {
  bytes: number;
  bytesPerSecond: number;
}

/** The last progress report on the job's stdout, if any. */
export async function lastFlashProgress(job: JobView): Promise<FlashProgress | undefined> {
  const log = job.output();
  const release = log.acquire();
  const pieces: Buffer[] = [];
  try {
    let offset = Math.max(0, log.length - TAIL_BYTES);
    while (offset < log.length) {
      // A read stops at a stream boundary; stderr (the flasher's messages) is skipped.
      const piece = await log.read(offset, log.length - offset);
      if (piece.data.length === 0) break;
      if (piece.stream === 'stdout') pieces.push(piece.data);
      offset += piece.data.length;
    }
  } finally {
    release();
  }
  const lines = Buffer.concat(pieces).toString('utf8').split('\n').reverse();
  // The tail may start inside a line: an unparsable one is not a report; look further back.
  for (const line of lines) {
    const progress = parseProgressLine(line);
    if (progress) return progress;
  }
  return undefined;
}

/**
 * The throughput of a flash job that completed: the image bytes of its `done` report over the
 * job's wall time (power-off, mux, write, sync and verify: what a user waits for).
 */
export async function flashThroughput(job: JobView): Promise<FlashThroughput | undefined> {
  const { startedAt, endedAt } = job.record;
  const last = await lastFlashProgress(job);
  if (last?.phase !== 'done' || startedAt === undefined || endedAt === undefined) return undefined;
  const seconds = Math.max(endedAt - startedAt, 1) / 1000;
  return { bytes: last.bytesRead, bytesPerSecond: last.bytesRead / seconds };
}
