/**
 * JigService.Exec and JigService.GotoState: running commands on a DUT's shell and bringing a DUT
 * to a state. The lease is checked here as for every mutating call; the console writer is taken
 * by the exec engine (dut-exec.ts), the transitions are in dut-strategy.ts.
 */
import type { ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  DutGoal,
  type ExecRequest,
  type ExecResponse,
  ExecVia,
  type GotoStateRequest,
  type GotoStateResponse,
} from '../../../protocol/gen/jiglet/v1/jig.js';
import { failedPrecondition, invalidArgument, permissionDenied } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import { can } from '../auth/permissions.js';
import type { ImageCache } from '../images/image-cache.js';
import { checkSha256 } from '../images/image-cache.js';
import { DutShells } from '../jig/dut-exec.js';
import { type GoalName, gotoState } from '../jig/dut-strategy.js';
import { commandOfArgv } from '../jig/exec-protocol.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { boundedNumber } from '../jobs/job-spec.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { leaseOf } from '../leases/lease-header.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { abortWhenClientGone, unary } from './respond.js';

/** Exec's timeout when the client names none, and the longest it may ask for. */
const DEFAULT_EXEC_MS = 30_000;
const MAX_EXEC_MS = 24 * 3600 * 1000;
/** Goto's timeout when the client names none. */
const DEFAULT_GOTO_MS = 5 * 60_000;
/** Longest command line (a canonical-mode tty line holds 4095 bytes, markers included). */
const MAX_COMMAND = 3500;
/** Most stdin bytes an interactive exec types. */
const MAX_STDIN = 64 * 1024;

const GOALS: Partial<Record<DutGoal, GoalName>> = {
  [DutGoal.DUT_GOAL_OFF]: 'off',
  [DutGoal.DUT_GOAL_BOOTED]: 'booted',
  [DutGoal.DUT_GOAL_SHELL]: 'shell',
};

/** The Exec and GotoState handlers. */
export function execHandlers(
  jig: JigRuntime,
  images: ImageCache,
  leases: LeaseManager,
  supervisor: Supervisor,
  log: Logger,
) {
  const shells = new DutShells();
  return {
    exec: unary(log, 'Exec', async (call: ServerUnaryCall<ExecRequest, ExecResponse>) => {
      const who = identityOf(call);
      const { request } = call;
      const dut = jig.get(request.dut);
      if (request.via === ExecVia.EXEC_VIA_SSH)
        throw failedPrecondition(
          `exec over SSH is not available yet; leave --via out to use ${dut.dut.name}'s serial console`,
        );
      const lease = leases.check(dut.dut.name, leaseOf(call), who);
      const command = commandOf(request);
      const timeoutMs =
        request.timeoutMs === 0
          ? DEFAULT_EXEC_MS
          : boundedNumber('timeout_ms', BigInt(request.timeoutMs), MAX_EXEC_MS);
      if (request.stdin.length > MAX_STDIN)
        throw invalidArgument(`stdin for an exec is at most ${MAX_STDIN} bytes (it is typed on the console)`);
      if (request.stdin.length > 0 && !request.interactive)
        throw invalidArgument('stdin goes with interactive (-i): otherwise the command reads /dev/null');
      const { controller, dispose } = abortWhenClientGone(call);
      const started = performance.now();
      try {
        const result = await shells.exec(
          dut,
          who,
          lease?.id,
          {
            command,
            timeoutMs,
            interactive: request.interactive,
            stdin: Buffer.from(request.stdin),
            keepKernelLines: request.keepKernelLines,
          },
          controller.signal,
        );
        const durationMs = Math.round(performance.now() - started);
        jig.events.publish({
          kind: 'exec',
          at: Date.now(),
          dut: dut.dut.name,
          command: command.slice(0, 1000),
          by: who.name,
          exitCode: result.exitCode,
          timedOut: result.timedOut,
          durationMs,
        });
        return {
          exitCode: result.exitCode,
          stdout: result.stdout,
          kernelLines: result.kernelLines,
          durationMs,
          timedOut: result.timedOut,
          loggedIn: result.loggedIn,
        };
      } finally {
        dispose();
      }
    }),

    gotoState: unary(log, 'GotoState', async (call: ServerUnaryCall<GotoStateRequest, GotoStateResponse>) => {
      const who = identityOf(call);
      const { request } = call;
      const dut = jig.get(request.dut);
      const goal = GOALS[request.goal];
      if (!goal) throw invalidArgument('a state is required: off, booted or shell');
      const leaseId = leaseOf(call);
      const fence = (): void => void leases.check(dut.dut.name, leaseId, who);
      const lease = leases.check(dut.dut.name, leaseId, who);
      if (request.imageSha256) {
        if (!can(who.role, 'flash'))
          throw permissionDenied(`${who.name} (role ${who.role}) may not flash ${dut.dut.name}`);
        checkSha256(request.imageSha256);
        images.get(request.imageSha256);
      }
      const timeoutMs =
        request.timeoutMs === 0
          ? DEFAULT_GOTO_MS
          : boundedNumber('timeout_ms', BigInt(request.timeoutMs), MAX_EXEC_MS);
      const started = performance.now();
      const steps = await gotoState({
        dut,
        goal,
        imageSha256: request.imageSha256 || undefined,
        who,
        lease: lease?.id,
        fence,
        shells,
        supervisor,
        timeoutMs,
        publish: (step) =>
          jig.events.publish({
            kind: 'goto',
            at: Date.now(),
            dut: dut.dut.name,
            goal,
            by: who.name,
            ...step,
          }),
      });
      return { steps, durationMs: Math.round(performance.now() - started) };
    }),
  };
}

/** The command line to run: the request's command, or its argv quoted word by word. */
function commandOf(request: ExecRequest): string {
  if ((request.command === '') === (request.argv.length === 0))
    throw invalidArgument('an exec names a command line or an argv (exactly one)');
  const command = request.command || commandOfArgv(request.argv);
  if (command.length > MAX_COMMAND)
    throw invalidArgument(
      `the command is ${command.length} characters long; a console line holds at most ${MAX_COMMAND} (copy a script to the DUT instead)`,
    );
  if (/[\r\n]/.test(command))
    throw invalidArgument(
      'the command must be one line (no CR or LF): the console runs what it reads line by line',
    );
  return command;
}
