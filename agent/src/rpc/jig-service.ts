/**
 * jiglet.v1.JigService: DUTs, power, serial tail, console and expect over the jig runtime.
 * Method permissions are checked by the interceptor; finer rights (switching power, taking a
 * console over) are checked here.
 */
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type ExpectRequest,
  type ExpectResponse,
  type JigServiceServer,
  PowerAction,
  type SerialTailRequest,
  type SerialTailResponse,
} from '../../../protocol/gen/jiglet/v1/jig.js';
import { invalidArgument, JigletError, permissionDenied } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import { can } from '../auth/permissions.js';
import type { ArrivingUpload } from '../images/arriving-uploads.js';
import { checkSha256, type ImageCache } from '../images/image-cache.js';
import { expectLine } from '../jig/dut-expect.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { compilePattern } from '../jig/line-matcher.js';
import { pumpSerial, type SerialStart } from '../jig/serial-pump.js';
import { boundedDuration } from '../jobs/job-spec.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { leaseOf } from '../leases/lease-header.js';
import { fenceStartedJob } from '../leases/lease-jobs.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { consoleSession } from './console-session.js';
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
import { abortWhenClientGone, eventOrAbort, failStream, unary } from './respond.js';

/** Longest off time a client may ask for in a cycle. */
const MAX_OFF_TIME_MS = 600_000;
/** Expect waits this long when the client names no timeout, and at most this long at all. */
const DEFAULT_EXPECT_MS = 30_000;
/** How long a flash that follows an upload waits for that upload to begin (FlashRequest.follow_upload). */
const FOLLOW_UPLOAD_WAIT_MS = 30_000;
const MAX_EXPECT_MS = 24 * 3600 * 1000;
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
      if (request.bmapSha256) images.get(checkSha256(request.bmapSha256));
      // A first flash: the client uploads the image and asks for it in the same breath.
      let arriving: ArrivingUpload | undefined;
      if (request.followUpload && !images.has(request.imageSha256)) {
        const { controller, dispose } = abortWhenClientGone(call);
        try {
          arriving = await images.follow(request.imageSha256, {
            waitMs: FOLLOW_UPLOAD_WAIT_MS,
            signal: controller.signal,
          });
        } finally {
          dispose();
        }
      }
      if (!arriving && !images.has(request.imageSha256)) {
        images.get(request.imageSha256); // NOT_FOUND, saying to upload it
      }
      const jobId = await dut.startFlash({
        imageSha256: request.imageSha256,
        arriving,
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

/** Expect: the request checked, the search done in dut-expect.ts, its outcome put on the wire. */
async function expect(
  request: ExpectRequest,
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
  let outcome: Awaited<ReturnType<typeof expectLine>>;
  try {
    outcome = await expectLine({
      dut,
      pattern: request.pattern,
      re,
      timeoutMs,
      start: request.sincePowerOn ? 'since-power-on' : () => startOf(request),
      clientGone: controller.signal,
      events: jig.events,
      by,
    });
  } finally {
    dispose();
  }
  if (outcome === 'client-gone') throw new JigletError('JIGLET_E_UNAVAILABLE', 'the client went away');
  const { captureJobId, match, timeout } = outcome;
  if (match)
    return {
      captureJobId,
      match: { ...match, lineOffset: BigInt(match.lineOffset), nextOffset: BigInt(match.nextOffset) },
    };
  return { captureJobId, timeout: { ...timeout!, offset: BigInt(timeout!.offset) } };
}
