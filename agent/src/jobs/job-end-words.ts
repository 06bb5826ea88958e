/**
 * How a job ended, in the words a person reads after "the … driver": a job stopped because its
 * lease ended says so, not "was killed by SIGTERM" (the signal is how, not why).
 */
import { STOP_REASON_WORDS } from '../../../protocol/src/stop-reasons.js';
import type { JobRecord } from './job-records.js';

/** `timedOut` says how long the timeout was, e.g. "timed out after 30 s". */
export function howJobEnded(record: Readonly<JobRecord>, timedOut: string): string {
  if (record.state === 'failed') return `could not start: ${record.error ?? 'unknown reason'}`;
  if (record.stopReason === 'timeout') return timedOut;
  if (record.stopReason) return `was stopped ${STOP_REASON_WORDS[record.stopReason]}`;
  if (record.signal) return `was killed by ${record.signal}`;
  if (record.state === 'lost') return 'was lost (the agent stopped while it ran)';
  return `exited with code ${record.exitCode}`;
}
