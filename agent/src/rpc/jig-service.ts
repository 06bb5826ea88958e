/**
 * jiglet.v1.JigService: DUTs, power, serial tail, console and expect over the jig runtime.
 * Method permissions are checked by the interceptor; finer rights (switching power, taking a
 * console over) are checked here.
 */
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type ConsoleRequest,
  type ConsoleResponse,
  type ExpectResponse,
  type JigServiceServer,
  PowerAction,
  type SerialTailRequest,
  type SerialTailResponse,
} from '../../../protocol/gen/jiglet/v1/jig.js';
import {
  failedPrecondition,
  invalidArgument,
  JigletError,
  permissionDenied,
} from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import { can } from '../auth/permissions.js';
import { checkSha256, type ImageCache } from '../images/image-cache.js';
import type { ConsoleWriter, DutRuntime } from '../jig/dut-runtime.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { compilePattern, LineMatcher } from '../jig/line-matcher.js';
import { pumpSerial, type SerialStart } from '../jig/serial-pump.js';
import { boundedDuration } from '../jobs/job-spec.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { leaseOf } from '../leases/lease-header.js';
import { fenceStartedJob } from '../leases/lease-jobs.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { execHandlers } from './exec-handlers.js';
import {
  captureRestartedEvent,
  healthStateOf,
  powerActionOf,
  toWireDut,
  toWirePowerState,
  toWireRecord,
} from './jig-wire.js';
import type { FollowerRegistry } from './job-service.js';
import { abortWhenClientGone, eventOrAbort, failStream, statusFor, unary } from './respond.js';

/** Longest off time a client may ask for in a cycle. */
const MAX_OFF_TIME_MS = 600_000;
/** Expect waits this long when the client names no timeout, and at most this long at all. */
const DEFAULT_EXPECT_MS = 30_000;
const MAX_EXPECT_MS = 24 * 3600 * 1000;
/** Largest keystroke message accepted on a console. */
const MAX_CONSOLE_INPUT = 64 * 1024;
/** Longest reason an admin may give for a DUT's state. */
const MAX_REASON = 1024;

/** Builds the JigService handlers. */
export function jigService(
  jig: JigRuntime,
  images: ImageCache,
  leases: LeaseManager,
  log: Logger,
  followers: FollowerRegistry,
  supervisor: Supervisor,
): JigServiceServer {
  return {
    ...execHandlers(jig, images, leases, supervisor, log),
    listDuts: unary(log, 'ListDuts', async (call) => ({
      duts: jig.list(call.request.labels).map((d) => toWireDut(d, jig.health(d.dut.name))),
    })),

    setDutState: unary(log, 'SetDutState', async (call) => {
      const { request } = call;
      const dut = jig.get(request.dut);
      const state = healthStateOf(request.state);
      if (request.reason.length > MAX_REASON)
        throw invalidArgument(`a reason is at most ${MAX_REASON} characters`);
      const health = jig.health(dut.dut.name);
      health.setState(state, request.reason.trim(), identityOf(call).name);
      return { dut: toWireDut(dut, health) };
    }),

    checkDutHealth: unary(log, 'CheckDutHealth', async (call) => {
      const dut = jig.get(call.request.dut);
      const health = jig.health(dut.dut.name);
      const outcome = await health.checkNow();
      return { dut: toWireDut(dut, health), jobId: outcome.jobId, passed: outcome.passed };
    }),

    power: unary(log, 'Power', async (call) => {
      const who = identityOf(call);
      const { request } = call;
      const dut = jig.get(request.dut);
      const action = powerActionOf(request.action);
      if (action !== 'status' && !can(who.role, 'power.switch')) {
        throw permissionDenied(
          `${who.name} (role ${who.role}) may read but not switch the power of ${dut.dut.name}`,
        );
      }
      const leaseId = leaseOf(call);
      const fence = (): void => void leases.check(dut.dut.name, leaseId, who);
      if (action !== 'status') fence();
      if (request.offTimeMs !== 0 && request.action !== PowerAction.POWER_ACTION_CYCLE) {
        throw invalidArgument('off_time_ms applies to a power cycle only');
      }
      const offTimeMs =
        request.offTimeMs === 0
          ? undefined
          : boundedDuration('the power-off time', BigInt(request.offTimeMs), MAX_OFF_TIME_MS);
      const started = performance.now();
      const result = await dut.runPower(action, who.name, offTimeMs, action === 'status' ? undefined : fence);
      return {
        dut: dut.dut.name,
        state: toWirePowerState(result.state),
        jobId: result.jobId,
        serialOffset: BigInt(result.serialOffset),
        durationMs: Math.round(performance.now() - started),
      };
    }),

    serialTail: (call) => serialTail(call, jig, log, followers),
    console: (call) => consoleSession(call, jig, leases, log, followers),
    expect: unary(log, 'Expect', (call) => expect(call.request, call, jig, identityOf(call).name)),

    flash: unary(log, 'Flash', async (call) => {
      const who = identityOf(call);
      const { request } = call;
      const dut = jig.get(request.dut);
      const leaseId = leaseOf(call);
      const fence = (): void => void leases.check(dut.dut.name, leaseId, who);
      fence();
      checkSha256(request.imageSha256);
      images.get(request.imageSha256);
      if (request.bmapSha256) images.get(checkSha256(request.bmapSha256));
      const jobId = await dut.startFlash({
        imageSha256: request.imageSha256,
        bmapSha256: request.bmapSha256 || undefined,
        verify: !request.noVerify,
        owner: who.name,
        fence,
      });
      await fenceStartedJob({ leases, supervisor, dut: dut.dut.name, leaseId, caller: who, jobId, log });
      return { jobId };
    }),
  };
}

function startOf(request: {
  offset?: bigint;
  since?: Date;
  fromEnd?: boolean;
  fromNow?: boolean;
}): SerialStart {
  if (request.offset !== undefined) {
    if (request.offset > BigInt(Number.MAX_SAFE_INTEGER))
      throw new JigletError(
        'JIGLET_E_OUT_OF_RANGE',
        `offset ${request.offset} is past the end of any serial log`,
      );
    return { offset: Number(request.offset) };
  }
  if (request.since !== undefined) {
    const ms = request.since.getTime();
    if (!Number.isFinite(ms)) throw invalidArgument('since is not a valid time');
    return { sinceMs: ms };
  }
  if (request.fromEnd || request.fromNow) return { fromEnd: true };
  return {};
}

async function serialTail(
  call: ServerWritableStream<SerialTailRequest, SerialTailResponse>,
  jig: JigRuntime,
  log: Logger,
  followers: FollowerRegistry,
): Promise<void> {
  const { controller, dispose } = abortWhenClientGone(call);
  followers.active.add(controller);
  try {
    const dut = jig.get(call.request.dut);
    const end = await pumpSerial({
      dut,
      start: startOf(call.request),
      follow: call.request.follow,
      signal: controller.signal,
      reader: {
        onCapture: (monitor, restarted) => {
          if (restarted) call.write({ captureJobId: monitor.jobId, ...captureRestartedEvent(monitor.jobId) });
        },
        onRecord: (record, monitor) => call.write({ captureJobId: monitor.jobId, ...toWireRecord(record) }),
        drained: (signal) => eventOrAbort(call, 'drain', signal),
      },
    });
    if (end === 'done') call.end();
  } catch (err) {
    failStream(log, 'SerialTail', call, err);
  } finally {
    followers.active.delete(controller);
    dispose();
  }
}

/**
 * One console session: the first message attaches the writer, the output pump starts at the
 * current end of the log, keystrokes go to the capture job's stdin with backpressure. The session
 * ends when the client half-closes or goes away, or when an admin takes the console over.
 */
function consoleSession(
  call: ServerDuplexStream<ConsoleRequest, ConsoleResponse>,
  jig: JigRuntime,
  leases: LeaseManager,
  log: Logger,
  followers: FollowerRegistry,
): void {
  const { controller, dispose } = abortWhenClientGone(call);
  followers.active.add(controller);
  let writer: ConsoleWriter | undefined;
  let dut: DutRuntime | undefined;
  let finished = false;
  // The capture's stdin outlives this session: a drain listener left on it would leak.
  let waitingOn: NodeJS.WritableStream | undefined;
  const onDrain = (): void => {
    waitingOn = undefined;
    call.resume();
  };
  const finish = (err?: unknown): void => {
    if (finished) return;
    finished = true;
    waitingOn?.off('drain', onDrain);
    controller.abort();
    writer?.release();
    writer?.signal.removeEventListener('abort', onTakenOver);
    followers.active.delete(controller);
    call.off('data', onData);
    dispose();
    if (call.cancelled || call.destroyed) return;
    if (err === undefined) call.end();
    else call.emit('error', statusFor(log, 'Console', err));
  };
  const onTakenOver = (): void => finish(writer?.signal.reason);
  const onData = (msg: ConsoleRequest): void => {
    try {
      if (!writer) {
        if (!msg.open) throw invalidArgument('the first console message must open a console (name the DUT)');
        dut = jig.get(msg.open.dut);
        const who = identityOf(call);
        const lease = leases.check(dut.dut.name, leaseOf(call), who);
        writer = dut.attachConsole(who, msg.open.takeOver, lease?.id);
        writer.signal.addEventListener('abort', onTakenOver, { once: true });
        const capture = dut.requireCapture();
        call.write({
          attached: { dut: dut.dut.name, captureJobId: capture.jobId, offset: BigInt(capture.boundary) },
        });
        pumpSerial({
          dut,
          start: { fromEnd: true },
          follow: true,
          signal: controller.signal,
          reader: {
            onCapture: (monitor, restarted) => {
              if (restarted) call.write(captureRestartedEvent(monitor.jobId));
            },
            onRecord: (record) => call.write(toWireRecord(record)),
            drained: (signal) => eventOrAbort(call, 'drain', signal),
          },
        }).then(
          () => finish(),
          (err: unknown) => finish(err),
        );
        return;
      }
      if (msg.open) throw invalidArgument('this console is already open; send keystrokes as input');
      const input = msg.input ?? Buffer.alloc(0);
      if (input.length > MAX_CONSOLE_INPUT)
        throw invalidArgument(`a console message holds at most ${MAX_CONSOLE_INPUT} bytes`);
      if (input.length === 0) return;
      let stdin: NodeJS.WritableStream;
      try {
        stdin = writer.input();
      } catch {
        // The capture is between jobs: keystrokes for a console nobody can see are dropped, and said so.
        call.write({
          event: {
            offset: 0n,
            nextOffset: 0n,
            time: new Date(),
            event: 'dropped-input',
            detail: String(input.length),
          },
        });
        return;
      }
      // Backpressure: stop reading keystrokes until the capture has taken these.
      if (!stdin.write(input)) {
        call.pause();
        waitingOn = stdin;
        stdin.once('drain', onDrain);
      }
    } catch (err) {
      finish(err);
    }
  };
  call.on('data', onData);
  call.once('end', () => finish());
  controller.signal.addEventListener('abort', () => finish(), { once: true });
}

async function expect(
  request: {
    dut: string;
    pattern: string;
    timeoutMs: number;
    offset?: bigint;
    fromNow?: boolean;
    sincePowerOn?: boolean;
    ignoreCase: boolean;
  },
  call: NodeJS.EventEmitter,
  jig: JigRuntime,
  by: string,
): Promise<ExpectResponse> {
  const dut = jig.get(request.dut);
  const re = compilePattern(request.pattern, request.ignoreCase);
  const timeoutMs =
    request.timeoutMs === 0
      ? DEFAULT_EXPECT_MS
      : boundedDuration('the expect timeout', BigInt(request.timeoutMs), MAX_EXPECT_MS);
  const { controller, dispose } = abortWhenClientGone(call);
  const found = new AbortController();
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([controller.signal, found.signal, deadline]);
  let matcher = new LineMatcher(re);
  let result: ExpectResponse | undefined;
  const first = dut.requireCapture();
  const start = request.sincePowerOn ? sincePowerOn(dut, first.jobId) : startOf(request);
  let captureJobId = first.jobId;
  // Where the search stands: reported on a timeout, so a client can go on from there.
  let reached = 'offset' in start ? start.offset : 'fromEnd' in start ? first.boundary : 0;
  try {
    await pumpSerial({
      dut,
      start,
      follow: true,
      signal,
      reader: {
        onCapture: (monitor, restarted) => {
          captureJobId = monitor.jobId;
          if (restarted) matcher = new LineMatcher(re); // a line never spans two captures
        },
        onRecord: (record) => {
          reached = record.nextOffset;
          if (record.kind !== 'chunk' || result) return true;
          const match = matcher.push(record.data, record.offset);
          if (match) {
            result = {
              captureJobId,
              match: {
                line: match.line,
                matched: match.matched,
                groups: match.groups,
                lineOffset: BigInt(match.lineOffset),
                nextOffset: BigInt(record.nextOffset),
                time: new Date(record.at),
              },
            };
            found.abort();
          }
          return true;
        },
        drained: async () => {},
      },
    });
  } finally {
    dispose();
  }
  const publish = (match?: { line: string; lineOffset: bigint }): void =>
    jig.events.publish({
      kind: 'expect',
      at: Date.now(),
      dut: request.dut,
      pattern: request.pattern,
      by,
      matched: match !== undefined,
      line: match?.line,
      lineOffset: match ? Number(match.lineOffset) : undefined,
    });
  if (result?.match) {
    publish(result.match);
    return result;
  }
  if (controller.signal.aborted) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the client went away');
  publish();
  const capture = dut.capture;
  const serialState =
    capture && capture.state !== 'open'
      ? `the serial port (${dut.serialSource}) is ${capture.state}${capture.lastEvent ? `: ${capture.lastEvent}` : ''}`
      : '';
  return { captureJobId, timeout: { lastLines: matcher.lastLines, offset: BigInt(reached), serialState } };
}

/** Where the serial log stood at the DUT's last power-on (the start of a capture that began since). */
function sincePowerOn(dut: DutRuntime, captureJobId: string): SerialStart {
  const mark = dut.lastPowerOn;
  if (!mark)
    throw failedPrecondition(
      `${dut.dut.name} has not been switched on since the agent started: power it on (jigctl power on --dut ${dut.dut.name}) or search with --offset`,
    );
  return mark.captureJobId === captureJobId ? { offset: mark.offset } : {};
}
