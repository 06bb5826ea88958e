/**
 * Worker thread body of the output pump (see output-pump.ts): reads users' jobs' stdout and
 * stderr from unix sockets and appends them to their output logs, so a job that writes as fast
 * as a pipe allows costs this thread its reads and writes, not the agent's event loop.
 *
 * Each socket reads straight into a buffer of its own, and a buffer is written out when it fills,
 * when another socket has bytes to write, or before a report: one write per batch of reads, no
 * buffer allocated per read, and the log's bytes in the order they were read. The agent is told
 * what was appended at most once per REPORT_INTERVAL_MS, one report in flight.
 */
import { appendFileSync, closeSync, openSync, writeSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { INDEX_FILE, indexLine, LOG_FILE, type Segment, type StreamName } from './output-log.js';
import {
  type FromPump,
  type JobReport,
  REPORT_DATA_BYTES,
  STREAM_BYTE,
  type ToPump,
} from './output-pump-protocol.js';
import { StderrTail } from './stderr-tail.js';

/** Each socket's read buffer; it is written out once less than READ_MIN_BYTES is free. */
const READ_BUFFER_BYTES = 128 * 1024;
const READ_MIN_BYTES = 32 * 1024;
/** See scheduleReport(). */
const REPORT_INTERVAL_MS = 1;
/**
 * Read buffers of closed sockets, kept for the next jobs: allocated per job instead, they are
 * memory outside this thread's small heap that waits for its rare collections, which let the
 * agent's RSS run ~40 MiB higher over a thousand short jobs.
 */
const FREE_BUFFERS_MAX = 16;

/** One job's output, from registration until both its sockets are closed. */
interface PumpedJob {
  token: string;
  dir: string;
  /** The log, once the agent bound the sockets to a job; -1 before. */
  fd: number;
  /** Bytes in the file: what the agent is told. */
  written: number;
  /** Bytes read, counting those not yet written. */
  length: number;
  lastStream: StreamName | undefined;
  segments: Segment[];
  /** Copies of the reads since the last report, while they fit in REPORT_DATA_BYTES. */
  data: Buffer[];
  dataBytes: number;
  /** More was read since the last report than it may carry: the agent reads the file. */
  dataDropped: boolean;
  readers: Reader[];
  /** Sockets that closed (stdout and stderr make two). */
  closed: number;
  stderrTail: StderrTail;
  error: string | undefined;
  dirty: boolean;
  over: boolean;
}

/**
 * One of a job's sockets and its buffer: bytes before `start` are written, bytes from `start` to
 * `fill` are not yet, and the next read lands at `fill` (only nextReadBuffer() moves it back to 0,
 * since the read buffer is handed out before the read).
 */
interface Reader {
  job: PumpedJob;
  stream: StreamName;
  socket: Socket;
  buf: Buffer;
  start: number;
  fill: number;
}

const port = parentPort!;
const { socketPath } = workerData as { socketPath: string };
const jobs = new Map<string, PumpedJob>();
const freeBuffers: Buffer[] = [];
/** The one reader with bytes not yet written, if any: bytes reach the file in the order read. */
let pending: Reader | undefined;
let reportInFlight = false;
let reportScheduled = false;
let lastReportAt = Number.NEGATIVE_INFINITY;

const post = (msg: FromPump, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

port.on('message', (msg: ToPump) => {
  switch (msg.type) {
    case 'prepare':
      prepare(msg.token);
      break;
    case 'bind':
      bind(msg.token, msg.dir);
      break;
    case 'destroy': {
      const job = jobs.get(msg.token);
      if (!job) break;
      for (const r of job.readers) r.socket.destroy();
      job.closed = 2;
      finish(job);
      break;
    }
    case 'ack':
      reportInFlight = false;
      scheduleReport();
      break;
  }
});
post({ type: 'ready' });

/** Connects two sockets to the agent for a job still to come, each named by its header. */
function prepare(token: string): void {
  const job: PumpedJob = {
    token,
    dir: '',
    fd: -1,
    written: 0,
    length: 0,
    lastStream: undefined,
    segments: [],
    data: [],
    dataBytes: 0,
    dataDropped: false,
    readers: [],
    closed: 0,
    stderrTail: new StderrTail(),
    error: undefined,
    dirty: false,
    over: false,
  };
  jobs.set(token, job);
  for (const stream of ['stdout', 'stderr'] as const) connect(job, stream);
}

/** Opens the log the prepared sockets of `token` append to; the job starts once the agent hears. */
function bind(token: string, dir: string): void {
  const job = jobs.get(token);
  if (!job || job.over) {
    post({ type: 'bound', token, error: 'its sockets are closed' });
    return;
  }
  try {
    job.fd = openSync(join(dir, LOG_FILE), 'a');
    job.dir = dir;
  } catch (err) {
    post({ type: 'bound', token, error: (err as Error).message });
    return;
  }
  post({ type: 'bound', token });
}

function connect(job: PumpedJob, stream: StreamName): void {
  const buf = freeBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  const reader = { job, stream, buf, start: 0, fill: 0 } as Reader;
  reader.socket = createConnection({
    path: socketPath,
    onread: {
      buffer: () => nextReadBuffer(reader),
      callback: (n: number) => {
        took(reader, n);
        return true;
      },
    },
  });
  job.readers.push(reader);
  reader.socket.write(Buffer.concat([Buffer.from(job.token, 'latin1'), Buffer.of(STREAM_BYTE[stream])]));
  // The job's output ends here; its end is reported once both sockets have closed (the agent
  // then knows a socket it was still waiting for will not come).
  reader.socket.on('error', () => reader.socket.destroy());
  reader.socket.once('close', () => {
    // Its last bytes go out before its buffer can serve another job.
    if (pending === reader) flush(reader);
    job.closed += 1;
    if (job.closed >= 2) finish(job);
    if (freeBuffers.length < FREE_BUFFERS_MAX) freeBuffers.push(reader.buf);
    reader.buf = Buffer.alloc(0);
  });
}

/** Where the socket's next read goes: after what it holds, once there is room enough. */
function nextReadBuffer(reader: Reader): Buffer {
  if (reader.buf.length - reader.fill < READ_MIN_BYTES) {
    flush(reader);
    reader.start = 0;
    reader.fill = 0;
  }
  return reader.buf.subarray(reader.fill);
}

/** `n` bytes were read into the reader's buffer, at its fill mark. */
function took(reader: Reader, n: number): void {
  const { job, stream } = reader;
  if (job.over) {
    reader.fill += n;
    reader.start = reader.fill;
    return;
  }
  const chunk = reader.buf.subarray(reader.fill, reader.fill + n);
  if (stream === 'stderr') job.stderrTail.push(chunk);
  // A log that cannot be written is reported once; the agent stops the job, and what it writes
  // meanwhile is read and dropped so it is not blocked on a full pipe while it is stopped.
  // The agent starts the job only once it is bound: bytes before that are no job's.
  if (job.fd < 0 && job.error === undefined) fail(job, new Error('output arrived before the job had a log'));
  if (job.error !== undefined) {
    reader.fill += n;
    reader.start = reader.fill;
    return;
  }
  if (pending && pending !== reader) flush(pending);
  if (job.lastStream !== stream) {
    const seg = { offset: job.length, stream };
    try {
      appendFileSync(join(job.dir, INDEX_FILE), indexLine(seg));
    } catch (err) {
      fail(job, err);
      return;
    }
    job.segments.push(seg);
    job.lastStream = stream;
  }
  reader.fill += n;
  pending = reader;
  job.length += n;
  if (!job.dataDropped && job.dataBytes + n <= REPORT_DATA_BYTES) {
    job.data.push(Buffer.from(chunk));
    job.dataBytes += n;
  } else {
    job.dataDropped = true;
    job.data = [];
    job.dataBytes = 0;
  }
  markDirty(job);
}

/** Writes out what the reader holds. */
function flush(reader: Reader): void {
  const { job, start, fill } = reader;
  reader.start = fill;
  if (pending === reader) pending = undefined;
  if (fill === start || job.error !== undefined) return;
  try {
    let done = start;
    while (done < fill) done += writeSync(job.fd, reader.buf, done, fill - done);
    job.written += fill - start;
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
  if (pending?.job === job) flush(pending);
  job.over = true;
  if (job.fd >= 0) closeSync(job.fd);
  markDirty(job);
}

function markDirty(job: PumpedJob): void {
  job.dirty = true;
  scheduleReport();
}

/**
 * Reports once this turn's reads are done, so a burst of reads makes one report, and at most
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
  lastReportAt = performance.now();
  // The agent is only told of bytes in the file.
  if (pending) flush(pending);
  const reports: JobReport[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const job of jobs.values()) {
    if (!job.dirty) continue;
    job.dirty = false;
    const report: JobReport = { token: job.token, length: job.written, segments: job.segments };
    job.segments = [];
    if (!job.dataDropped && job.dataBytes > 0) {
      // One buffer of its own, sent without a copy.
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
