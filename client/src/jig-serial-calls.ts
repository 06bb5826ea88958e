/**
 * JigService's serial calls, as `client.jig` makes them: the serial log as records (tail), the one
 * console writer (attach, type, detach) and expect, which waits on the agent for a line.
 */
import { once } from 'node:events';
import { Metadata } from '@grpc/grpc-js';
import type {
  ConsoleResponse,
  ExpectMatch,
  ExpectResponse,
  JigServiceClient,
  SerialTailResponse,
} from '../../protocol/gen/jiglet/v1/jig.js';
import { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { readStream } from './read-stream.js';
import { callOptions, UNARY_DEADLINE_MS } from './unary-call.js';

/** How long expect waits when no timeout is given (the agent's own default). */
const DEFAULT_EXPECT_MS = 30_000;

/** One record of a serial log. */
export type SerialRecord =
  | { type: 'chunk'; offset: number; nextOffset: number; time: Date; data: Buffer; captureJobId: string }
  | {
      type: 'event';
      offset: number;
      nextOffset: number;
      time: Date;
      event: string;
      detail: string;
      captureJobId: string;
    };

/** Where a serial read starts: an offset, a time, the current end; none = the whole log. */
export interface SerialStartOptions {
  offset?: number;
  since?: Date;
  fromEnd?: boolean;
}

/** An attached console. */
export interface ConsoleSession {
  /** Capture job and offset the output starts at. */
  readonly attached: { captureJobId: string; offset: number };
  /** The DUT's output from the moment of attaching; leaving a loop over it does not detach. */
  readonly output: AsyncIterable<SerialRecord>;
  /** Sends keystrokes; resolves when the transport took them (backpressure). */
  write(data: Buffer | string): Promise<void>;
  /** Detaches (releases the writer slot) and waits for the session to end. */
  close(): Promise<void>;
}

/** Where and how an expect searches. */
export interface ExpectOptions {
  timeoutMs?: number;
  offset?: number;
  fromNow?: boolean;
  /** Search from the DUT's last power-on (a fast boot is not missed). */
  sincePowerOn?: boolean;
  ignoreCase?: boolean;
  signal?: AbortSignal;
}

/** A line that matched an expect. */
export interface ExpectResult {
  line: string;
  matched: string;
  groups: string[];
  lineOffset: number;
  /** Where to search from for the next match. */
  nextOffset: number;
  time: Date | undefined;
  captureJobId: string;
}

/** Thrown by expect() when nothing matched in time; carries what was seen. */
export class ExpectTimeoutError extends JigletError {
  constructor(
    readonly pattern: string,
    readonly timeoutMs: number,
    readonly lastLines: string[],
    readonly offset: number,
    readonly serialState: string,
  ) {
    super(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `no line matched /${pattern}/ within ${timeoutMs} ms${serialState ? ` (${serialState})` : ''}`,
    );
    this.name = 'ExpectTimeoutError';
  }
}

/** A DUT's serial log as records; see JigClient.serial. */
export async function* serialTail(
  stub: JigServiceClient,
  dut: string,
  opts: SerialStartOptions & { follow?: boolean; signal?: AbortSignal },
): AsyncGenerator<SerialRecord, void, undefined> {
  const call = stub.serialTail({
    dut,
    follow: opts.follow ?? false,
    ...(opts.offset !== undefined ? { offset: BigInt(opts.offset) } : {}),
    ...(opts.since !== undefined ? { since: opts.since } : {}),
    ...(opts.fromEnd ? { fromEnd: true } : {}),
  });
  for await (const msg of readStream(call, opts.signal)) {
    const record = toRecord(msg, msg.captureJobId);
    if (record) yield record;
  }
}

/** Attaches as the DUT's one console writer; see JigClient.console. */
export async function attachConsole(
  stub: JigServiceClient,
  dut: string,
  opts: { takeOver?: boolean },
): Promise<ConsoleSession> {
  const call = stub.console();
  // Armed now: the agent may end the session (OK status) long before close() is called.
  const ended = once(call, 'status').then(() => undefined);
  ended.catch(() => undefined);
  const failed = new Promise<never>((_, reject) => {
    call.once('error', (err: Error) => reject(fromGrpcError(err)));
  });
  failed.catch(() => undefined);
  call.write({ open: { dut, takeOver: opts.takeOver ?? false } });
  const iterator = (call as AsyncIterable<ConsoleResponse>)[Symbol.asyncIterator]();
  const first = await Promise.race([iterator.next(), failed]);
  if (first.done || !first.value.attached) {
    call.cancel();
    throw new JigletError('JIGLET_E_INTERNAL', 'the agent ended the console before attaching it');
  }
  const { captureJobId, offset } = first.value.attached;
  let currentJob = captureJobId;
  const records = (async function* (): AsyncGenerator<SerialRecord, void, undefined> {
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        const record = toRecord(next.value, currentJob);
        if (!record) continue;
        if (record.type === 'event' && record.event === 'capture-restarted') currentJob = record.detail;
        yield record;
      }
    } catch (err) {
      throw fromGrpcError(err as Error);
    }
  })();
  // Leaving a for-await loop must not end the session: a test reads up to a prompt, types, reads on.
  const output: AsyncIterable<SerialRecord> = {
    [Symbol.asyncIterator]: () => ({
      next: () => records.next(),
      return: async () => ({ done: true, value: undefined }),
    }),
  };
  return {
    attached: { captureJobId, offset: Number(offset) },
    output,
    async write(data) {
      const input = Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (!call.write({ input })) await Promise.race([once(call, 'drain'), failed]);
    },
    async close() {
      call.end();
      // grpc-js delivers the final status only after every message before it has been read, and
      // a caller that never read `output` has left up to a window of them: read them away.
      const drained = (async () => {
        for (;;) if ((await records.next()).done) return;
      })().catch(() => undefined);
      await Promise.race([Promise.all([drained, ended]), failed.catch(() => undefined)]);
    },
  };
}

/** Waits on the agent for a serial line matching `pattern`; see JigClient.expect. */
export async function expectLine(
  stub: JigServiceClient,
  dut: string,
  pattern: string,
  opts: ExpectOptions,
): Promise<ExpectResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXPECT_MS;
  const res = await new Promise<ExpectResponse>((resolve, reject) => {
    const call = stub.expect(
      {
        dut,
        pattern,
        timeoutMs,
        ignoreCase: opts.ignoreCase ?? false,
        ...(opts.offset !== undefined ? { offset: BigInt(opts.offset) } : {}),
        ...(opts.fromNow ? { fromNow: true } : {}),
        ...(opts.sincePowerOn ? { sincePowerOn: true } : {}),
      },
      new Metadata(),
      callOptions(timeoutMs + UNARY_DEADLINE_MS),
      (err, value) => (err ? reject(fromGrpcError(err)) : resolve(value as ExpectResponse)),
    );
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    call.once('status', () => opts.signal?.removeEventListener('abort', onAbort));
    if (opts.signal?.aborted) call.cancel();
  });
  if (res.match) return fromMatch(res.match, res.captureJobId);
  const t = res.timeout;
  throw new ExpectTimeoutError(
    pattern,
    timeoutMs,
    t?.lastLines ?? [],
    Number(t?.offset ?? 0n),
    t?.serialState ?? '',
  );
}

function fromMatch(m: ExpectMatch, captureJobId: string): ExpectResult {
  return {
    line: m.line,
    matched: m.matched,
    groups: m.groups,
    lineOffset: Number(m.lineOffset),
    nextOffset: Number(m.nextOffset),
    time: m.time,
    captureJobId,
  };
}

function toRecord(
  msg: Pick<SerialTailResponse, 'chunk' | 'event'>,
  captureJobId: string,
): SerialRecord | undefined {
  if (msg.chunk) {
    const c = msg.chunk;
    return {
      type: 'chunk',
      offset: Number(c.offset),
      nextOffset: Number(c.nextOffset),
      time: c.time ?? new Date(0),
      data: Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength),
      captureJobId,
    };
  }
  if (msg.event) {
    const e = msg.event;
    return {
      type: 'event',
      offset: Number(e.offset),
      nextOffset: Number(e.nextOffset),
      time: e.time ?? new Date(0),
      event: e.event,
      detail: e.detail,
      captureJobId,
    };
  }
  return undefined;
}
