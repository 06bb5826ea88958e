/**
 * jiglet.v1.JobService: the gRPC face of the supervisor. Authorization by method already
 * happened in the interceptor; ownership ("may this caller touch this job?") is checked here.
 */
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type JobServiceServer,
  OutputStream,
  type StreamOutputRequest,
  type StreamOutputResponse,
  type WriteStdinRequest,
  type WriteStdinResponse,
} from '../../../protocol/gen/jiglet/v1/jobs.js';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { type EncodedStreamOutputResponse, outputPiece } from '../../../protocol/src/output-wire.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { Identity } from '../auth/identity.js';
import { authorizeOwner } from '../auth/permissions.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { boundedDuration, validateJobSpec } from '../jobs/job-spec.js';
import { DEFAULT_GRACE_MS, type JobView, type Supervisor } from '../jobs/supervisor.js';
import { leaseOf } from '../leases/lease-header.js';
import { fenceStartedJob } from '../leases/lease-jobs.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { FOLLOW_INFLIGHT_BYTES, followLog } from '../output/follow-log.js';
import type { StreamName } from '../output/output-log.js';
import { jobPage } from './job-page.js';
import { stateName, toWireJob } from './job-wire.js';
import { abortWhenClientGone, ByteBoundedWriter, failStream, statusFor, unary } from './respond.js';

/** Longest grace period a client may ask for. */
const MAX_GRACE_MS = 10 * 60 * 1000;
/** Longest job id we bother to look up; anything longer is not one of ours. */
const MAX_ID_LENGTH = 64;

/** Live follower streams, for shutdown and leak checks. */
export interface FollowerRegistry {
  readonly active: Set<AbortController>;
  /** Output followers waiting for their client to take what was already sent (leak checks). */
  stalled: number;
}

/** Builds the JobService handlers over a supervisor. */
export function jobService(
  supervisor: Supervisor,
  log: Logger,
  followers: FollowerRegistry,
  leases: LeaseManager,
  jig: JigRuntime,
): JobServiceServer {
  const wire = (view: JobView, who: Identity) => toWireJob(view, seesEnv(who, view));

  return {
    startJob: unary(log, 'StartJob', async (call) => {
      const who = identityOf(call);
      const spec = validateJobSpec(call.request.spec);
      // Only a DUT of this jig: NOT_FOUND names the ones there are (and no records file is made for a typo).
      if (spec.dut !== '') jig.get(spec.dut);
      // A job that drives a leased DUT must carry that lease, sent by its holder; it ends with it.
      const leaseId = leaseOf(call);
      const lease = spec.dut !== '' ? leases.check(spec.dut, leaseId, who) : undefined;
      // Its processes may call back on the local endpoint as `who`, on its DUT, under this lease.
      const view = await supervisor.start(spec, who.name, { local: { role: who.role, lease: lease?.id } });
      if (spec.dut !== '') {
        const jobId = view.record.id;
        await fenceStartedJob({ leases, supervisor, dut: spec.dut, leaseId, caller: who, jobId, log });
      }
      return { job: wire(view, who) };
    }),

    stopJob: unary(log, 'StopJob', async (call) => {
      const who = identityOf(call);
      const view = supervisor.get(checkId(call.request.id));
      authorizeOwner(who, view.record.owner, 'jobs.stop.any', `stop job ${view.record.id}`);
      const grace =
        call.request.graceMs === 0n
          ? DEFAULT_GRACE_MS
          : boundedDuration('the stop grace period', call.request.graceMs, MAX_GRACE_MS);
      return { job: wire(await supervisor.stop(view.record.id, grace, 'request'), who) };
    }),

    getJob: unary(log, 'GetJob', async (call) => {
      const who = identityOf(call);
      return { job: wire(supervisor.get(checkId(call.request.id)), who) };
    }),

    listJobs: unary(log, 'ListJobs', async (call) => {
      const who = identityOf(call);
      const states = call.request.states.map((s) => {
        const name = stateName(s);
        if (!name) throw invalidArgument(`unknown job state ${s} in filter`);
        return name;
      });
      return jobPage(supervisor, call.request, states, (v) => wire(v, who));
    }),

    streamOutput: (call) => streamOutput(call, supervisor, log, followers),

    writeStdin: (call, callback) => writeStdin(call, callback, supervisor, log),
  };
}

/** Environment values can hold secrets: only the job's owner and admins see them. */
function seesEnv(who: Identity, view: JobView): boolean {
  return who.name === view.record.owner || who.role === 'admin';
}

function checkId(id: string): string {
  if (id === '') throw invalidArgument('a job id is required');
  if (id.length > MAX_ID_LENGTH) throw invalidArgument(`"${id.slice(0, 16)}…" is too long to be a job id`);
  return id;
}

async function streamOutput(
  call: ServerWritableStream<StreamOutputRequest, StreamOutputResponse>,
  supervisor: Supervisor,
  log: Logger,
  followers: FollowerRegistry,
): Promise<void> {
  const { controller, dispose } = abortWhenClientGone(call);
  followers.active.add(controller);
  try {
    const who = identityOf(call);
    const view = supervisor.get(checkId(call.request.id));
    const output = view.output();
    const { offset: rawOffset, follow } = call.request;
    if (rawOffset > BigInt(output.length)) {
      throw new JigletError(
        'JIGLET_E_OUT_OF_RANGE',
        `offset ${rawOffset} is past the end of job ${view.record.id}'s output (${output.length} bytes)`,
      );
    }
    const out = new ByteBoundedWriter<StreamOutputResponse>(call, FOLLOW_INFLIGHT_BYTES);
    // The message the log's next read goes straight into (see FollowSink.buffer).
    let prepared: EncodedStreamOutputResponse | undefined;
    const end = await followLog({
      log: output,
      offset: Number(rawOffset),
      follow,
      signal: controller.signal,
      sink: {
        buffer: (offset, length, stream) => {
          prepared = outputPiece(offset, length, wireStream(stream));
          return prepared.chunk.data;
        },
        send: (piece) => {
          const message =
            prepared?.chunk.data === piece.data
              ? prepared
              : {
                  chunk: { offset: BigInt(piece.offset), data: piece.data, stream: wireStream(piece.stream) },
                };
          prepared = undefined;
          return out.write(message, piece.data.length);
        },
        busy: () => out.pending > 0,
        settled: (signal) => waitForClient(followers, () => out.settled(signal)),
        drained: (signal) => waitForClient(followers, () => out.drained(signal)),
      },
    });
    if (end === 'aborted') return;
    if (end === 'complete' && follow) {
      call.write({ finished: toWireJob(view, seesEnv(who, view)) });
    }
    call.end();
  } catch (err) {
    failStream(log, 'StreamOutput', call, err);
  } finally {
    followers.active.delete(controller);
    dispose();
  }
}

function wireStream(stream: StreamName): OutputStream {
  return stream === 'stderr' ? OutputStream.OUTPUT_STREAM_STDERR : OutputStream.OUTPUT_STREAM_STDOUT;
}

/** Counts a follower as stalled while it waits for its client to take what was sent. */
async function waitForClient(followers: FollowerRegistry, wait: () => Promise<void>): Promise<void> {
  followers.stalled += 1;
  try {
    await wait();
  } finally {
    followers.stalled -= 1;
  }
}

function writeStdin(
  call: ServerReadableStream<WriteStdinRequest, WriteStdinResponse>,
  callback: sendUnaryData<WriteStdinResponse>,
  supervisor: Supervisor,
  log: Logger,
): void {
  let jobId: string | undefined;
  let stdin: NodeJS.WritableStream | undefined;
  let written = 0;
  let settled = false;
  const onStdinError = (err: Error): void =>
    finish(
      new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `job ${jobId} stopped reading its stdin (${err.message})`,
      ),
    );
  const onDrain = (): void => {
    call.resume();
  };
  const finish = (err: unknown): void => {
    if (settled) return;
    settled = true;
    stdin?.off('error', onStdinError);
    stdin?.off('drain', onDrain);
    call.off('data', onData);
    if (err === null) {
      callback(null, { bytesWritten: BigInt(written) });
    } else {
      callback(statusFor(log, 'WriteStdin', err));
      call.destroy();
    }
  };
  const onData = (msg: WriteStdinRequest): void => {
    try {
      if (!stdin) {
        jobId = checkId(msg.id);
        const who = identityOf(call);
        const view = supervisor.get(jobId);
        authorizeOwner(who, view.record.owner, 'jobs.stdin.any', `write to job ${jobId}`);
        stdin = supervisor.stdinOf(jobId);
        stdin.on('error', onStdinError);
      } else if (msg.id !== '' && msg.id !== jobId) {
        throw invalidArgument(`one WriteStdin call writes to one job: started with ${jobId}, got ${msg.id}`);
      }
      if (msg.data.length > 0) {
        written += msg.data.length;
        // Backpressure: stop reading from the client until the job has taken what we gave it.
        if (!stdin.write(msg.data)) {
          call.pause();
          stdin.once('drain', onDrain);
        }
      }
      if (msg.close) stdin.end();
    } catch (err) {
      finish(err);
    }
  };
  call.on('data', onData);
  call.once('end', () => finish(null));
  call.once('cancelled', () => finish(new JigletError('JIGLET_E_UNAVAILABLE', 'client cancelled')));
  call.once('error', (err) => finish(err));
}
