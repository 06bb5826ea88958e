/**
 * The run-record half of the client library: the timeline of a lease or a job, from the agent's
 * journals, for reports. Reached as `client.records`.
 */
import { type ChannelCredentials, type Client, type Interceptor, Metadata } from '@grpc/grpc-js';
import { type GetTimelineResponse, RecordServiceClient } from '../../protocol/gen/jiglet/v1/records.js';
import { invalidArgument } from '../../protocol/src/errors.js';
import { callOptions, unaryCall } from './unary-call.js';

export {
  type FlashSample,
  type GetTimelineResponse as Timeline,
  JobRole,
  type JobSpan,
  type LeaseSpan,
  type PowerInterval,
  type SerialLine,
  type TimelineEvent,
  TimelineEventKind,
} from '../../protocol/gen/jiglet/v1/records.js';

/**
 * Deadline of a timeline call: the agent may decode megabytes of serial log for one, more than a
 * quick call's 30 s allows on a slow jig host.
 */
const TIMELINE_DEADLINE_MS = 120_000;

/** Which run to read: a lease (ended or held) or a job. */
export type TimelineTarget = { leaseId: string } | { jobId: string };

/** The RecordService client. */
export class RecordClient {
  readonly #stub: RecordServiceClient;

  constructor(
    server: string,
    creds: ChannelCredentials,
    channel: ReturnType<Client['getChannel']>,
    interceptors: Interceptor[] = [],
  ) {
    this.#stub = new RecordServiceClient(server, creds, { channelOverride: channel, interceptors });
  }

  /**
   * The timeline of a lease (its DUT from grant to end, or now) or a job (its span, with its
   * DUT's events); serial lines are included unless `includeSerial` is false. `deadlineMs`
   * bounds the call (default 2 minutes).
   */
  async timeline(
    target: TimelineTarget,
    opts: { includeSerial?: boolean; deadlineMs?: number } = {},
  ): Promise<GetTimelineResponse> {
    const leaseId = 'leaseId' in target ? target.leaseId : undefined;
    const jobId = 'jobId' in target ? target.jobId : undefined;
    if (!leaseId === !jobId) throw invalidArgument('name exactly one of a lease id or a job id');
    return unaryCall<GetTimelineResponse>((cb) =>
      this.#stub.getTimeline(
        { leaseId, jobId, includeSerial: opts.includeSerial ?? true },
        new Metadata(),
        callOptions(opts.deadlineMs ?? TIMELINE_DEADLINE_MS),
        cb,
      ),
    );
  }
}
