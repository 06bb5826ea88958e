/**
 * Worker thread body of the output pump (see output-pump.ts): reads users' jobs' stdout and
 * stderr from unix sockets and appends them to their output logs, so a job that writes as fast
 * as a pipe allows costs this thread its reads and writes, not the agent's event loop. The agent
 * is told what was appended, at most one report in flight: a fast job's appends are reported
 * together, a slow one's at once.
 */
import { appendFileSync, closeSync, openSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { INDEX_FILE, indexLine, LOG_FILE, type Segment, type StreamName } from './output-log.js';
import {
  type FromPump,
  HEADER_BYTES,
  type JobReport,
  REPORT_DATA_BYTES,
  STREAM_CODES,
  type ToPump,
} from './output-pump-protocol.js';
import { StderrTail } from './stderr-tail.js';

/** One job's output, from registration until both its sockets are closed. */
interface PumpedJob {
  token: string;
  dir: string;
  fd: number;
  /** Bytes appended, counting those still in the batch. */
  length: number;
  /** Bytes in the file: what the agent is told. */
  written: number;
  lastStream: StreamName | undefined;
  segments: Segment[];
  /** Appends since the last report, while they fit in REPORT_DATA_BYTES. */
  data: Buffer[];
  dataBytes: number;
  /** More was appended since the last report than it may carry: the agent reads the file. */
  dataDropped: boolean;
  sockets: Set<Socket>;
  /** Sockets that ended (stdout and stderr make two). */
  ended: number;
  stderrTail: StderrTail;
  error: string | undefined;
  dirty: boolean;
  over: boolean;
}

const port = parentPort!;
const { socketPath } = workerData as { socketPath: string };
const jobs = new Map<string, PumpedJob>();
/** Appends not yet written, all of one job (see batched()). */
const batch = Buffer.allocUnsafeSlow(256 * 1024);
let batchFill = 0;
let batchJob: PumpedJob | undefined;
/** See scheduleReport(). */
const REPORT_INTERVAL_MS = 1;
let reportInFlight = false;
let reportScheduled = false;
let lastReportAt = Number.NEGATIVE_INFINITY;

const post = (msg: FromPump, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

const server = createServer((conn) => {
  // The first bytes say whose output this is; anything unknown is closed at once.
  let header = Buffer.alloc(0);
  const onHeader = (chunk: Buffer): void => {
    header = Buffer.concat([header, chunk]);
    if (header.length < HEADER_BYTES) return;
    conn.off('data', onHeader);
    const token = header.subarray(0, HEADER_BYTES - 1).toString('latin1');
    const stream = STREAM_CODES[header[HEADER_BYTES - 1]!];
    const job = jobs.get(token);
    if (!job || !stream || job.over) {
      conn.destroy();
      return;
    }
    adopt(job, conn, stream);
    if (header.length > HEADER_BYTES) append(job, stream, header.subarray(HEADER_BYTES));
  };
  conn.on('data', onHeader);
  conn.on('error', () => conn.destroy());
});
server.listen(socketPath, () => post({ type: 'ready' }));
server.on('error', (err) => post({ type: 'failed', message: err.message }));

port.on('message', (msg: ToPump) => {
  switch (msg.type) {
    case 'open':
      open(msg.token, msg.dir);
      break;
    case 'destroy': {
      const job = jobs.get(msg.token);
      if (!job) break;
      for (const s of job.sockets) s.destroy();
      job.ended = 2;
      finish(job);
      break;
    }
    case 'ack':
      reportInFlight = false;
      scheduleReport();
      break;
  }
});

function open(token: string, dir: string): void {
  let fd: number;
  try {
    fd = openSync(join(dir, LOG_FILE), 'a');
  } catch (err) {
    post({ type: 'opened', token, error: (err as Error).message });
    return;
  }
  jobs.set(token, {
    token,
    dir,
    fd,
    length: 0,
    written: 0,
    lastStream: undefined,
    segments: [],
    data: [],
    dataBytes: 0,
    dataDropped: false,
    sockets: new Set(),
    ended: 0,
    stderrTail: new StderrTail(),
    error: undefined,
    dirty: false,
    over: false,
  });
  post({ type: 'opened', token });
}

function adopt(job: PumpedJob, conn: Socket, stream: StreamName): void {
  job.sockets.add(conn);
  conn.on('data', (chunk: Buffer) => append(job, stream, chunk));
  conn.once('close', () => {
    job.sockets.delete(conn);
    job.ended += 1;
    if (job.ended >= 2) finish(job);
  });
}

function append(job: PumpedJob, stream: StreamName, chunk: Buffer): void {
  if (job.over) return;
  if (stream === 'stderr') job.stderrTail.push(chunk);
  // A log that cannot be written is reported once; the agent stops the job, and what it writes
  // meanwhile is read and dropped so it is not blocked on a full pipe while it is stopped.
  if (job.error !== undefined) return;
  try {
    if (job.lastStream !== stream) {
      const seg = { offset: job.length, stream };
      appendFileSync(join(job.dir, INDEX_FILE), indexLine(seg));
      job.segments.push(seg);
      job.lastStream = stream;
    }
  } catch (err) {
    fail(job, err);
    return;
  }
  batched(job, chunk);
  job.length += chunk.length;
  if (!job.dataDropped && job.dataBytes + chunk.length <= REPORT_DATA_BYTES) {
    job.data.push(chunk);
    job.dataBytes += chunk.length;
  } else {
    job.dataDropped = true;
    job.data = [];
    job.dataBytes = 0;
  }
  markDirty(job);
}

/**
 * Appends `chunk` to the job's file through the batch: a job writing fast arrives in reads of a
 * few KiB (what its own writes were), and one write per batch instead of one per read halves
 * this thread's time. Everything batched is written before the next report, so the agent is
 * never told of bytes that are not in the file.
 */
function batched(job: PumpedJob, chunk: Buffer): void {
  if (batchJob !== job || batchFill + chunk.length > batch.length) flushBatch();
  if (job.error !== undefined) return;
  // Socket reads are 64 KiB at most; anything bigger goes straight out, after the batch.
  if (chunk.length > batch.length) {
    writeAll(job, chunk, chunk.length);
    return;
  }
  chunk.copy(batch, batchFill);
  batchFill += chunk.length;
  batchJob = job;
}

/** Writes out the batch (see batched()). */
function flushBatch(): void {
  const job = batchJob;
  const length = batchFill;
  batchJob = undefined;
  batchFill = 0;
  if (job && length > 0 && job.error === undefined) writeAll(job, batch, length);
}

function writeAll(job: PumpedJob, data: Buffer, length: number): void {
  try {
    let done = 0;
    while (done < length) done += writeSync(job.fd, data, done, length - done);
    job.written += length;
  } catch (err) {
    fail(job, err);
  }
}

function fail(job: PumpedJob, err: unknown): void {
  job.error = (err as Error).message;
  markDirty(job);
}

function finish(job: PumpedJob): void {
  if (job.over) return;
  if (batchJob === job) flushBatch();
  job.over = true;
  closeSync(job.fd);
  markDirty(job);
}

function markDirty(job: PumpedJob): void {
  job.dirty = true;
  scheduleReport();
}

/**
 * Reports once this turn's reads are done, so a burst of appends makes one report, and at most
 * one report per REPORT_INTERVAL_MS: output that trickles is reported the moment it is written,
 * while a job writing at pipe speed costs both threads a message per millisecond, not one per
 * read (each costs a wake-up of the other thread: as much CPU as the read itself).
 */
function scheduleReport(): void {
  if (reportInFlight || reportScheduled) return;
  let any = false;
  for (const job of jobs.values()) any ||= job.dirty;
  if (!any) return;
  reportScheduled = true;
  const wait = lastReportAt + REPORT_INTERVAL_MS - performance.now();
  if (wait > 0) setTimeout(sendReport, wait);
  else setImmediate(sendReport);
}

function sendReport(): void {
  reportScheduled = false;
  flushBatch();
  lastReportAt = performance.now();
  const reports: JobReport[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const job of jobs.values()) {
    if (!job.dirty) continue;
    job.dirty = false;
    const report: JobReport = { token: job.token, length: job.written, segments: job.segments };
    job.segments = [];
    if (!job.dataDropped && job.dataBytes > 0) {
      // One buffer of its own, sent without a copy (a chunk can be a view of a bigger one).
      const data = new Uint8Array(job.dataBytes);
      let at = 0;
      for (const d of job.data) {
        data.set(d, at);
        at += d.length;
      }
      report.data = data;
      transfer.push(data.buffer);
    }
    job.data = [];
    job.dataBytes = 0;
    job.dataDropped = false;
    if (job.error !== undefined) report.error = job.error;
    if (job.over) {
      report.end = { stderrTail: job.stderrTail.snapshot() };
      jobs.delete(job.token);
    }
    reports.push(report);
  }
  if (reports.length === 0) return;
  reportInFlight = true;
  post({ type: 'report', reports }, transfer);
}
