/**
 * What the agent and the output pump's thread say to each other (output-pump.ts and
 * output-pump-worker.ts), and what a job's output socket starts with.
 */
import type { Segment, StreamName } from './output-log.js';
import type { StderrTailSnapshot } from './stderr-tail.js';

/** Hex characters of the token that opens each of a job's output sockets (pump → agent). */
export const TOKEN_CHARS = 32;
/** The token, then one byte naming the stream (see STREAM_CODES). */
export const HEADER_BYTES = TOKEN_CHARS + 1;
/** The stream byte of a socket's header: which of the job's streams the agent hands it to. */
export const STREAM_CODES: Readonly<Record<number, StreamName>> = { 111: 'stdout', 101: 'stderr' };
/** The header byte for each stream. */
export const STREAM_BYTE: Readonly<Record<StreamName, number>> = { stdout: 0x6f, stderr: 0x65 };
/**
 * Most appended bytes a report carries for one job. A follower that keeps up (a console, a test
 * printing lines) is then served from memory as with an inline writer; a job writing faster
 * than that is read back from the file, which is in the page cache.
 */
export const REPORT_DATA_BYTES = 64 * 1024;

/** Agent → pump. */
export type ToPump =
  /**
   * Connect two sockets for the next job, named by `token`, ahead of it: a job's start then
   * waits for one message, not for two connections.
   */
  | { type: 'prepare'; token: string }
  /** The prepared sockets of `token` are a job's: append to the log in `dir`; answered by 'bound'. */
  | { type: 'bind'; token: string; dir: string }
  /** Close a job's sockets now (something outside the job holds them open); its end is reported. */
  | { type: 'destroy'; token: string }
  /** The last report was taken: the next may be sent. */
  | { type: 'ack' };

/** One job's appends since its last report. */
export interface JobReport {
  token: string;
  length: number;
  segments: Segment[];
  data?: Uint8Array;
  /** Why the log could not be written (the appends stopped there). */
  error?: string;
  /** Both sockets are closed and everything they carried is in this and earlier reports. */
  end?: { stderrTail: StderrTailSnapshot };
}

/** Pump → agent. */
export type FromPump =
  | { type: 'ready' }
  | { type: 'bound'; token: string; error?: string }
  | { type: 'report'; reports: JobReport[] };
