/**
 * JigService's shell calls, as `client.jig` makes them: exec (a command on the DUT's shell, over
 * its serial console or SSH) and gotoState (off, booted or shell, doing only what is missing).
 */
import { Metadata } from '@grpc/grpc-js';
import {
  DutGoal,
  type ExecResponse,
  ExecVia,
  type GotoStateResponse,
  type JigServiceClient,
} from '../../protocol/gen/jiglet/v1/jig.js';
import { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { callOptions, UNARY_DEADLINE_MS, unaryCall } from './unary-call.js';

/** How long an exec may run when no timeout is given. */
const DEFAULT_EXEC_MS = 30_000;
/** How long gotoState may take when no timeout is given. */
const DEFAULT_GOTO_MS = 5 * 60_000;

/** How an exec runs. */
export interface ExecOptions {
  /** How long the command may run (default 30 s); past it, Ctrl-C and exit code 124. */
  timeoutMs?: number;
  /** The command's stdin is the console; `stdin` is typed to it, then Ctrl-D (a tty echoes it). */
  interactive?: boolean;
  stdin?: Buffer | string;
  /** Keep kernel console lines in stdout instead of taking them out. */
  keepKernelLines?: boolean;
  /**
   * The serial console (default), or the DUT's SSH server (its description needs an `ssh:`
   * section): stderr apart, a real exit status, stdin not echoed and up to 4 MiB.
   */
  via?: ExecTransport;
  signal?: AbortSignal;
}

/** How exec and copies reach the DUT. */
export type ExecTransport = 'serial' | 'ssh';

const VIAS: Record<ExecTransport, ExecVia> = { serial: ExecVia.EXEC_VIA_SERIAL, ssh: ExecVia.EXEC_VIA_SSH };

/** The wire value of a transport; undefined = let the agent choose. */
export function execViaOf(via: ExecTransport | undefined): ExecVia {
  return via === undefined ? ExecVia.EXEC_VIA_UNSPECIFIED : VIAS[via];
}

/** The transport a response names. */
export function transportOf(via: ExecVia): ExecTransport {
  return via === ExecVia.EXEC_VIA_SSH ? 'ssh' : 'serial';
}

/** What an exec gave back. */
export interface ExecResult {
  /** The exit code on the DUT: 0-255, 124 when it timed out. */
  exitCode: number;
  /** What it printed (a console has one stream: stderr is in it too). */
  stdout: Buffer;
  /** What it wrote to stderr (over SSH; empty over serial, where it is part of stdout). */
  stderr: Buffer;
  /** The transport that ran it. */
  via: ExecTransport;
  /** The signal that ended it on the DUT ("KILL"), over SSH, if one did. */
  signal: string;
  /** Kernel console lines that arrived meanwhile, kept out of stdout. */
  kernelLines: string[];
  durationMs: number;
  timedOut: boolean;
  /** The agent logged in first. */
  loggedIn: boolean;
}

/** A state gotoState brings a DUT to. */
export type DutGoalName = 'off' | 'booted' | 'shell';

const GOALS: Record<DutGoalName, DutGoal> = {
  off: DutGoal.DUT_GOAL_OFF,
  booted: DutGoal.DUT_GOAL_BOOTED,
  shell: DutGoal.DUT_GOAL_SHELL,
};

/** What gotoState did. */
export interface GotoResult {
  /** The transitions taken, e.g. power cycle, boot, login; one "already …" when none was needed. */
  steps: { name: string; detail: string; durationMs: number }[];
  durationMs: number;
}

/** Runs a command on the DUT's shell; see JigClient.exec. */
export async function execOnDut(
  stub: JigServiceClient,
  dut: string,
  command: string | readonly string[],
  opts: ExecOptions,
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_MS;
  const res = await new Promise<ExecResponse>((resolve, reject) => {
    const call = stub.exec(
      {
        dut,
        command: typeof command === 'string' ? command : '',
        argv: typeof command === 'string' ? [] : [...command],
        timeoutMs,
        interactive: opts.interactive ?? false,
        stdin: opts.stdin === undefined ? Buffer.alloc(0) : Buffer.from(opts.stdin),
        via: VIAS[opts.via ?? 'serial'],
        keepKernelLines: opts.keepKernelLines ?? false,
      },
      new Metadata(),
      // A login may come first, and a timed-out command is interrupted before the answer.
      callOptions(timeoutMs + UNARY_DEADLINE_MS * 2),
      (err, value) => (err ? reject(fromGrpcError(err)) : resolve(value as ExecResponse)),
    );
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    call.once('status', () => opts.signal?.removeEventListener('abort', onAbort));
    if (opts.signal?.aborted) call.cancel();
  });
  const stdout = Buffer.from(res.stdout.buffer, res.stdout.byteOffset, res.stdout.byteLength);
  return {
    exitCode: res.exitCode,
    stdout,
    stderr: Buffer.from(res.stderr.buffer, res.stderr.byteOffset, res.stderr.byteLength),
    via: transportOf(res.via),
    signal: res.signal,
    kernelLines: res.kernelLines,
    durationMs: res.durationMs,
    timedOut: res.timedOut,
    loggedIn: res.loggedIn,
  };
}

/** Brings a DUT to a state; see JigClient.gotoState. */
export async function gotoState(
  stub: JigServiceClient,
  dut: string,
  state: DutGoalName,
  opts: { imageSha256?: string; timeoutMs?: number; reflash?: boolean },
): Promise<GotoResult> {
  const goal = GOALS[state];
  if (goal === undefined)
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `DUT state "${state}" is not one of off, booted, shell`,
    );
  const timeoutMs = opts.timeoutMs ?? DEFAULT_GOTO_MS;
  const res = await unaryCall<GotoStateResponse>((cb) =>
    stub.gotoState(
      { dut, goal, imageSha256: opts.imageSha256 ?? '', timeoutMs, reflash: opts.reflash ?? false },
      new Metadata(),
      callOptions(timeoutMs + UNARY_DEADLINE_MS),
      cb,
    ),
  );
  return { steps: res.steps, durationMs: res.durationMs };
}
