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
import type { DutSsh } from '../jig/dut-ssh.js';
import { type GoalName, gotoState } from '../jig/dut-strategy.js';
import { commandOfArgv } from '../jig/exec-protocol.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { ExecResult } from '../jig/shell-session.js';
import { sshExec } from '../jig/ssh-exec.js';
import { boundedNumber } from '../jobs/job-spec.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { leaseOf } from '../leases/lease-header.js';
import { fenceStartedJob } from '../leases/lease-jobs.js';
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
/** Most stdin bytes an exec over SSH sends (its request must fit in one gRPC message). */
const MAX_SSH_STDIN = 4 * 1024 * 1024;

const GOALS: Partial<Record<DutGoal, GoalName>> = {
  [DutGoal.DUT_GOAL_OFF]: 'off',
  [DutGoal.DUT_GOAL_BOOTED]: 'booted',
  [DutGoal.DUT_GOAL_SHELL]: 'shell',
};

/** An exec over serial as the RPC answers it. */
function execOverSerial(result: ExecResult): ExecResponse {
  return {
    exitCode: result.exitCode,
    stdout: result.stdout,
    kernelLines: result.kernelLines,
    durationMs: 0,
    timedOut: result.timedOut,
    loggedIn: result.loggedIn,
    stderr: Buffer.alloc(0),
    via: ExecVia.EXEC_VIA_SERIAL,
    signal: '',
  };
}

/** An exec over the DUT's SSH connection, as the RPC answers it. */
async function execOverSsh(
  ssh: DutSsh,
  command: string,
  timeoutMs: number,
  stdin: Buffer,
  signal: AbortSignal,
): Promise<ExecResponse> {
  const result = await sshExec(ssh, { command, timeoutMs, stdin }, signal);
  return {
    exitCode: result.exitCode,
    stdout: result.stdout,
    kernelLines: [],
    durationMs: 0,
    timedOut: result.timedOut,
    loggedIn: false,
    stderr: result.stderr,
    via: ExecVia.EXEC_VIA_SSH,
    signal: result.signal,
  };
}

/** The Exec and GotoState handlers. */
export function execHandlers(
  jig: JigRuntime,
  images: ImageCache,
  leases: LeaseManager,
  supervisor: Supervisor,
  log: Logger,
) {
  const { shells } = jig;
  return {
    exec: unary(log, 'Exec', async (call: ServerUnaryCall<ExecRequest, ExecResponse>) => {
      const who = identityOf(call);
      const { request } = call;
      const dut = jig.get(request.dut);
      const overSsh = request.via === ExecVia.EXEC_VIA_SSH;
      const ssh = overSsh ? jig.ssh(dut.dut.name) : undefined;
      if (ssh && dut.power.state === 'off')
        throw failedPrecondition(
          `${dut.dut.name} is powered off: switch it on and let it boot first (jigctl dut goto ${dut.dut.name} booted)`,
        );
      const lease = leases.check(dut.dut.name, leaseOf(call), who);
      const command = commandOf(request);
      const timeoutMs =
        request.timeoutMs === 0
          ? DEFAULT_EXEC_MS
          : boundedNumber('timeout_ms', BigInt(request.timeoutMs), MAX_EXEC_MS);
      const maxStdin = overSsh ? MAX_SSH_STDIN : MAX_STDIN;
      if (request.stdin.length > maxStdin)
        throw invalidArgument(
          overSsh
            ? `stdin for an exec over SSH is at most ${maxStdin} bytes; copy bigger input to the DUT first (jigctl cp)`
            : `stdin for an exec is at most ${maxStdin} bytes (it is typed on the console; over SSH, --via ssh, it may be bigger)`,
        );
      if (request.stdin.length > 0 && !request.interactive)
        throw invalidArgument('stdin goes with interactive (-i): otherwise the command reads /dev/null');
      const { controller, dispose } = abortWhenClientGone(call);
      const started = performance.now();
      try {
        const result: ExecResponse = ssh
          ? await execOverSsh(ssh, command, timeoutMs, Buffer.from(request.stdin), controller.signal)
          : await execOverSerial(
              await shells.exec(
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
              ),
            );
        result.durationMs = Math.round(performance.now() - started);
        jig.events.publish({
          kind: 'exec',
          at: Date.now(),
          dut: dut.dut.name,
          command: command.slice(0, 1000),
          by: who.name,
          exitCode: result.exitCode,
          timedOut: result.timedOut,
          durationMs: result.durationMs,
          ...(ssh ? { via: 'ssh' as const } : {}),
        });
        return result;
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
        reflash: request.reflash,
        who,
        lease: lease?.id,
        fence,
        fenceJob: (jobId) =>
          fenceStartedJob({ leases, supervisor, dut: dut.dut.name, leaseId, caller: who, jobId, log }),
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
