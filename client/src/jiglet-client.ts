/**
 * The typed client library for jiglet: what jigctl, CI pipelines and hil-tests use. Every
 * method either resolves or rejects with a JigletError carrying the agent's error code.
 */

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { type ClientReadableStream, credentials, Metadata } from '@grpc/grpc-js';
import {
  type GetJobResponse,
  type Job,
  type JobServiceClient,
  type JobSpec,
  JobState,
  type ListJobsResponse,
  OutputStream,
  type StartJobResponse,
  type StopJobResponse,
  type StreamOutputResponse,
} from '../../protocol/gen/jiglet/v1/jobs.js';
import { JigletError } from '../../protocol/src/errors.js';
import { JobServiceWireClient } from '../../protocol/src/output-wire.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { TLS13_SUITES } from '../../protocol/src/tls-suites.js';
import { type ConnectionSettings, isLocalAddress } from './connection.js';
import { DutAccessClient } from './dut-access-client.js';
import { type FlashEvent, type FlashResult, flashDut } from './flash-client.js';
import { ImageClient } from './image-client.js';
import { JigClient } from './jig-client.js';
import { type ClaimOptions, type Lease, LeaseClient, leaseInterceptor, withLease } from './lease-client.js';
import { readStream } from './read-stream.js';
import { RecordClient } from './record-client.js';
import { callOptions, UNARY_DEADLINE_MS, unaryCall } from './unary-call.js';
import { WebClient } from './web-client.js';

export { type Job, type JobSpec, JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

/** HTTP/2 window for bulk output streams; the 64 KiB default caps throughput on fast links. */
const FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;

/** A piece of job output or, at the end of a followed stream, the job's final record. */
export type OutputEvent =
  | { type: 'chunk'; offset: number; data: Buffer; stream: 'stdout' | 'stderr' }
  | { type: 'finished'; job: Job };

/** What to run; everything but the command is optional. */
export type StartOptions = Partial<Omit<JobSpec, 'limits' | 'timeoutMs'>> & {
  command: string;
  memoryBytes?: number;
  cpuMillis?: number;
  pidsMax?: number;
  timeoutMs?: number;
};

/** Writes to a running job's stdin with backpressure. */
export interface StdinWriter {
  write(data: Buffer | string): Promise<void>;
  /** Closes the job's stdin and resolves with the bytes the job received. */
  close(): Promise<number>;
  /** Ends the call without closing the job's stdin. */
  end(): Promise<number>;
}

/**
 * The TLS server name sent when the agent is dialled by IP address. grpc-js sends the host of the
 * address as the server name, and Node prints a deprecation warning (DEP0123, RFC 6066 allows no
 * IP there) in every program that uses this library against `127.0.0.1:7411`. The agent ignores
 * the name; the certificate is checked against the IP address itself (the `.invalid` name is
 * reserved and never resolves, so it cannot be confused with a real host).
 */
const IP_SERVERNAME = 'jiglet-agent.invalid';

/** The IP address of `host:port` or `[v6]:port`, or undefined for a name (or a unix socket). */
function ipLiteralOf(server: string): string | undefined {
  const colon = server.lastIndexOf(':');
  const host = server.startsWith('[')
    ? server.slice(1, server.indexOf(']'))
    : colon < 0
      ? server
      : server.slice(0, colon);
  return isIP(host) === 0 ? undefined : host;
}

/** Filters of the job list; empty = any. */
export interface JobListFilter {
  states?: JobState[];
  owner?: string;
  dut?: string;
}

/** A connection to one jiglet agent. */
export class JigletClient {
  readonly #stub: JobServiceClient;
  /** DUTs, power, serial, console and expect, over the same connection. */
  readonly jig: JigClient;
  /** The agent's image cache. */
  readonly images: ImageClient;
  /** Leases of DUTs. */
  readonly leases: LeaseClient;
  /** The run record: timelines of leases and jobs. */
  readonly records: RecordClient;
  /** Tickets for the agent's browser console. */
  readonly web: WebClient;
  /** SSH sessions on DUTs and file copies to and from them. */
  readonly dut: DutAccessClient;
  /** The lease every call carries (mutating calls on a leased DUT need it); see withLease. */
  lease: string | undefined;

  /** Opens a channel (lazily: the first call connects). */
  constructor(settings: ConnectionSettings) {
    const read = (what: string, path: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new JigletError(
          'JIGLET_E_INVALID_ARGUMENT',
          `cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code}`,
        );
      }
    };
    const ipHost = ipLiteralOf(settings.server);
    const creds = isLocalAddress(settings.server)
      ? credentials.createInsecure()
      : credentials.createFromSecureContext(
          tls.createSecureContext({
            ca: read('CA certificate', settings.ca),
            cert: read('client certificate', settings.cert),
            key: read('client key', settings.key),
            minVersion: 'TLSv1.3',
            ciphers: TLS13_SUITES,
          }),
          // See IP_SERVERNAME: the certificate is still checked against the address dialled.
          ipHost === undefined
            ? undefined
            : { checkServerIdentity: (_name, cert) => tls.checkServerIdentity(ipHost, cert) },
        );
    // Every stub gets this interceptor: each call carries the current lease.
    const interceptors = [leaseInterceptor(() => this.lease)];
    this.#stub = new JobServiceWireClient(settings.server, creds, {
      ...(ipHost === undefined ? {} : { 'grpc.ssl_target_name_override': IP_SERVERNAME }),
      interceptors,
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
      // An exec answers with up to 16 MiB of output.
      'grpc.max_receive_message_length': 24 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
    });
    this.jig = new JigClient(settings.server, creds, this.#stub.getChannel(), interceptors);
    this.images = new ImageClient(settings.server, creds, this.#stub.getChannel(), interceptors);
    this.leases = new LeaseClient(settings.server, creds, this.#stub.getChannel());
    this.records = new RecordClient(settings.server, creds, this.#stub.getChannel(), interceptors);
    this.web = new WebClient(settings.server, creds, this.#stub.getChannel());
    this.dut = new DutAccessClient(settings.server, creds, this.#stub.getChannel(), interceptors);
  }

  /** Starts a job; resolves once it runs (or has failed to start). */
  async start(opts: StartOptions): Promise<Job> {
    const spec: JobSpec = {
      command: opts.command,
      args: opts.args ?? [],
      env: opts.env ?? {},
      cwd: opts.cwd ?? '',
      dut: opts.dut ?? '',
      stdin: opts.stdin ?? false,
      timeoutMs: BigInt(opts.timeoutMs ?? 0),
      limits: {
        memoryBytes: BigInt(opts.memoryBytes ?? 0),
        cpuMillis: opts.cpuMillis ?? 0,
        pidsMax: opts.pidsMax ?? 0,
      },
    };
    const res = await unaryCall<StartJobResponse>((cb) =>
      this.#stub.startJob({ spec }, new Metadata(), callOptions(), cb),
    );
    return mustHaveJob(res.job);
  }

  /** Stops a job (SIGTERM, grace, kill of its tree) and resolves with its final record. */
  async stop(id: string, graceMs = 0): Promise<Job> {
    const res = await unaryCall<StopJobResponse>((cb) =>
      this.#stub.stopJob(
        { id, graceMs: BigInt(graceMs) },
        new Metadata(),
        callOptions(UNARY_DEADLINE_MS + graceMs),
        cb,
      ),
    );
    return mustHaveJob(res.job);
  }

  /** One job's record. */
  async get(id: string): Promise<Job> {
    const res = await unaryCall<GetJobResponse>((cb) =>
      this.#stub.getJob({ id }, new Metadata(), callOptions(), cb),
    );
    return mustHaveJob(res.job);
  }

  /** Every job record matching `filter`, newest first, read page by page (at most `limit`). */
  async list(filter: JobListFilter & { limit?: number } = {}): Promise<Job[]> {
    const jobs: Job[] = [];
    for await (const page of this.listPages(filter)) {
      jobs.push(...page);
      if (filter.limit && jobs.length >= filter.limit) return jobs.slice(0, filter.limit);
    }
    return jobs;
  }

  /** The job list one page at a time, newest first; the agent bounds each page's size. */
  async *listPages(filter: JobListFilter & { pageSize?: number } = {}): AsyncGenerator<Job[]> {
    let pageToken = '';
    do {
      const res = await this.listPage({ ...filter, pageToken });
      yield res.jobs;
      pageToken = res.nextPageToken;
    } while (pageToken !== '');
  }

  /** One page of the job list; pass `nextPageToken` back as `pageToken` for the next. */
  async listPage(
    filter: JobListFilter & { pageSize?: number; pageToken?: string } = {},
  ): Promise<ListJobsResponse> {
    return await unaryCall<ListJobsResponse>((cb) =>
      this.#stub.listJobs(
        {
          states: filter.states ?? [],
          owner: filter.owner ?? '',
          dut: filter.dut ?? '',
          pageSize: filter.pageSize ?? 0,
          pageToken: filter.pageToken ?? '',
        },
        new Metadata(),
        callOptions(),
        cb,
      ),
    );
  }

  /**
   * A job's output from `offset`. With `follow`, keeps going until the job is over and then
   * yields a final `finished` event. Breaking out of the loop or aborting `signal` cancels the
   * stream on the agent.
   */
  async *output(
    id: string,
    opts: { offset?: number | bigint; follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<OutputEvent, void, undefined> {
    const offset = BigInt(opts.offset ?? 0);
    if (offset < 0n || offset >= 2n ** 64n) {
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `offset ${offset} is not a byte position (0 or more)`,
      );
    }
    const call: ClientReadableStream<StreamOutputResponse> = this.#stub.streamOutput({
      id,
      offset,
      follow: opts.follow ?? false,
    });
    for await (const msg of readStream(call, opts.signal)) {
      if (msg.chunk) {
        yield {
          type: 'chunk',
          offset: Number(msg.chunk.offset),
          data: Buffer.from(msg.chunk.data.buffer, msg.chunk.data.byteOffset, msg.chunk.data.byteLength),
          stream: msg.chunk.stream === OutputStream.OUTPUT_STREAM_STDERR ? 'stderr' : 'stdout',
        };
      } else if (msg.finished) {
        yield { type: 'finished', job: msg.finished };
      }
    }
  }

  /** Opens a writer to a running job's stdin (the job must have been started with `stdin: true`). */
  stdin(id: string): StdinWriter {
    let first = true;
    let call!: ReturnType<JobServiceClient['writeStdin']>;
    const result = new Promise<number>((resolve, reject) => {
      call = this.#stub.writeStdin((err, res) =>
        err ? reject(fromGrpcError(err)) : resolve(Number(res?.bytesWritten ?? 0n)),
      );
    });
    // The rejection is delivered by the next write()/close(); don't let it go unhandled meanwhile.
    result.catch(() => undefined);
    const send = async (data: Buffer, close: boolean): Promise<void> => {
      const ok = call.write({ id: first ? id : '', data, close });
      first = false;
      if (!ok) await Promise.race([once(call, 'drain'), result]);
    };
    return {
      write: (data) => send(Buffer.isBuffer(data) ? data : Buffer.from(data), false),
      close: async () => {
        await send(Buffer.alloc(0), true);
        call.end();
        return result;
      },
      end: async () => {
        if (first) await send(Buffer.alloc(0), false);
        call.end();
        return result;
      },
    };
  }

  /** Uploads the image if the agent lacks it, flashes it onto the DUT, and follows the job. */
  flash(
    dut: string,
    image: string,
    opts: { bmap?: string; verify?: boolean; onEvent?: (e: FlashEvent) => void; signal?: AbortSignal } = {},
  ): Promise<FlashResult> {
    return flashDut(this, dut, image, opts);
  }

  /** Claims a DUT, runs `fn` with every call carrying the lease (renewed meanwhile), releases it. */
  withLease<T>(claim: ClaimOptions, fn: (lease: Lease) => Promise<T>): Promise<T> {
    return withLease(this, claim, fn);
  }

  /** Closes the channel. */
  close(): void {
    this.#stub.close();
  }
}

function mustHaveJob(job: Job | undefined): Job {
  if (!job) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered without a job record');
  return job;
}

/** True once a job can no longer change. */
export function isFinished(job: Job): boolean {
  return job.state !== JobState.JOB_STATE_PENDING && job.state !== JobState.JOB_STATE_RUNNING;
}
