/**
 * JigService.Console: one writer's keystrokes to a DUT's console and the console's output back,
 * with backpressure both ways.
 */
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ConsoleRequest, ConsoleResponse } from '../../../protocol/gen/jiglet/v1/jig.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { ConsoleWriter, DutRuntime } from '../jig/dut-runtime.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { pumpSerial } from '../jig/serial-pump.js';
import { leaseOf } from '../leases/lease-header.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { captureRestartedEvent, toWireRecord } from './jig-wire.js';
import type { FollowerRegistry } from './job-service.js';
import { abortWhenClientGone, eventOrAbort, statusFor } from './respond.js';

/** Largest keystroke message accepted on a console. */
const MAX_CONSOLE_INPUT = 64 * 1024;

/**
 * One console session: the first message attaches the writer, the output pump starts at the
 * current end of the log, keystrokes go to the capture job's stdin with backpressure. The session
 * ends when the client half-closes or goes away, or when an admin takes the console over.
 */
export function consoleSession(
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
