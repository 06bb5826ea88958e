/**
 * The jig half of the client library: DUTs, power, serial tail, console and expect. Reached as
 * `client.jig`; it shares the JigletClient's channel (one TLS connection per agent).
 */
import { once } from 'node:events';
import { type ChannelCredentials, type Client, type Interceptor, Metadata } from '@grpc/grpc-js';
import {
  type CheckDutHealthResponse,
  type ConsoleResponse,
  type Dut,
  DutGoal,
  DutHealth,
  type ExecResponse,
  ExecVia,
  type ExpectMatch,
  type ExpectResponse,
  type FlashResponse,
  type GotoStateResponse,
  JigServiceClient,
  type ListDutsResponse,
  PowerAction,
  type PowerResponse,
  PowerState,
  type SerialTailResponse,
  type SetDutStateResponse,
} from '../../protocol/gen/jiglet/v1/jig.js';
import { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { callOptions, UNARY_DEADLINE_MS, unaryCall } from './unary-call.js';

export {
  type Dut,
  DutHealth,
  type ExpectMatch,
  PowerState,
  SerialState,
} from '../../protocol/gen/jiglet/v1/jig.js';

import { readStream } from './read-stream.js';

/** A power action by name. */
export type PowerActionName = 'on' | 'off' | 'cycle' | 'status';

const ACTIONS: Record<PowerActionName, PowerAction> = {
  on: PowerAction.POWER_ACTION_ON,
  off: PowerAction.POWER_ACTION_OFF,
  cycle: PowerAction.POWER_ACTION_CYCLE,
  status: PowerAction.POWER_ACTION_STATUS,
};

/** A DUT's health by name. */
export type DutStateName = 'good' | 'bad' | 'maintenance';

const HEALTH: Record<DutStateName, DutHealth> = {
  good: DutHealth.DUT_HEALTH_GOOD,
  bad: DutHealth.DUT_HEALTH_BAD,
  maintenance: DutHealth.DUT_HEALTH_MAINTENANCE,
};

/**
 * Longest a health check call waits: the agent bounds each check by its configured timeout (at
 * most 12 h), and the check may first wait for the previous holder's clean-up.
 */
const HEALTH_CHECK_DEADLINE_MS = 13 * 3600 * 1000;

/** What a health check decided. */
export interface HealthCheckResult {
  /** The DUT after the check. */
  dut: Dut;
  /** The check job; `jigctl logs` shows why it failed. */
  jobId: string;
  passed: boolean;
}

/** What a power action did. */
export interface PowerResult {
  dut: string;
  state: 'on' | 'off' | 'unknown';
  /** The `jig-driver power` job, whose output has the driver's steps. */
  jobId: string;
  /** Serial-log offset just before the action: expect from here to see only this boot. */
  serialOffset: number;
  durationMs: number;
}

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

/** The JigService client. */
export class JigClient {
  readonly #stub: JigServiceClient;

  constructor(
    server: string,
    creds: ChannelCredentials,
    channel: ReturnType<Client['getChannel']>,
    interceptors: Interceptor[] = [],
  ) {
    this.#stub = new JigServiceClient(server, creds, { channelOverride: channel, interceptors });
  }

  /** The DUTs with their resources' states (only those with all `labels`, if given). */
  async duts(labels: Record<string, string> = {}): Promise<Dut[]> {
    const res = await unaryCall<ListDutsResponse>((cb) =>
      this.#stub.listDuts({ labels }, new Metadata(), callOptions(), cb),
    );
    return res.duts;
  }

  /** Switches or reads a DUT's power; resolves when the driver job has finished. */
  async power(dut: string, action: PowerActionName, opts: { offTimeMs?: number } = {}): Promise<PowerResult> {
    const wire = ACTIONS[action];
    if (wire === undefined)
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `power action "${action}" is not one of on, off, cycle, status`,
      );
    // A cycle waits its off time plus two driver deadlines; leave room beyond the agent's own timeout.
    const deadline = UNARY_DEADLINE_MS * 2 + (opts.offTimeMs ?? 0);
    const res = await unaryCall<PowerResponse>((cb) =>
      this.#stub.power(
        { dut, action: wire, offTimeMs: opts.offTimeMs ?? 0 },
        new Metadata(),
        callOptions(deadline),
        cb,
      ),
    );
    return {
      dut: res.dut,
      state:
        res.state === PowerState.POWER_STATE_ON
          ? 'on'
          : res.state === PowerState.POWER_STATE_OFF
            ? 'off'
            : 'unknown',
      jobId: res.jobId,
      serialOffset: Number(res.serialOffset),
      durationMs: res.durationMs,
    };
  }

  /**
   * A DUT's serial log as records. With `follow`, keeps going (across capture restarts) until
   * `signal` aborts or the loop is left; leaving the loop cancels the stream on the agent.
   */
  async *serial(
    dut: string,
    opts: SerialStartOptions & { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<SerialRecord, void, undefined> {
    const call = this.#stub.serialTail({
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

  /**
   * Attaches as the DUT's one console writer; resolves once attached. `takeOver` (admin) takes the
   * console from whoever holds it. The session ends when close() is called or the agent ends it.
   */
  async console(dut: string, opts: { takeOver?: boolean } = {}): Promise<ConsoleSession> {
    const call = this.#stub.console();
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

  /**
   * Waits on the agent for a serial line matching `pattern` (RE2 syntax); resolves with it, or
   * rejects with ExpectTimeoutError holding the last lines seen.
   */
  async expect(
    dut: string,
    pattern: string,
    opts: {
      timeoutMs?: number;
      offset?: number;
      fromNow?: boolean;
      /** Search from the DUT's last power-on (a fast boot is not missed). */
      sincePowerOn?: boolean;
      ignoreCase?: boolean;
      signal?: AbortSignal;
    } = {},
  ): Promise<ExpectResult> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const res = await new Promise<ExpectResponse>((resolve, reject) => {
      const call = this.#stub.expect(
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

  /**
   * Sets a DUT's health (admin): good puts it back in service, bad or maintenance keeps new
   * claims off it (a lease held now goes on). Resolves with the DUT as it is now.
   */
  async setState(dut: string, state: DutStateName, reason = ''): Promise<Dut> {
    const wire = HEALTH[state];
    if (wire === undefined)
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `DUT state "${state}" is not one of good, bad, maintenance`,
      );
    const res = await unaryCall<SetDutStateResponse>((cb) =>
      this.#stub.setDutState({ dut, state: wire, reason }, new Metadata(), callOptions(), cb),
    );
    return dutOf(res);
  }

  /** Runs the DUT's health check now (admin) and resolves when it has finished; its result sets the DUT's health. */
  async checkHealth(dut: string): Promise<HealthCheckResult> {
    const res = await unaryCall<CheckDutHealthResponse>((cb) =>
      this.#stub.checkDutHealth({ dut }, new Metadata(), callOptions(HEALTH_CHECK_DEADLINE_MS), cb),
    );
    return { dut: dutOf(res), jobId: res.jobId, passed: res.passed };
  }

  /**
   * Runs a command on the DUT's shell over its serial console (or SSH, `via`) and resolves with its output and
   * exit code (124 when it ran past `timeoutMs`, default 30 s, and was interrupted). A string is a
   * shell command line; an array is a program and its arguments, quoted for the DUT's shell.
   */
  async exec(dut: string, command: string | readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const res = await new Promise<ExecResponse>((resolve, reject) => {
      const call = this.#stub.exec(
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

  /**
   * Brings a DUT to a state — off, booted (boot seen since power-on) or shell (logged in) —
   * optionally running a cached image (flashed first unless the DUT already got it, or `reflash`).
   * Idempotent: only what is missing is done. Resolves with the steps taken.
   */
  async gotoState(
    dut: string,
    state: DutGoalName,
    opts: { imageSha256?: string; timeoutMs?: number; reflash?: boolean } = {},
  ): Promise<GotoResult> {
    const goal = GOALS[state];
    if (goal === undefined)
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `DUT state "${state}" is not one of off, booted, shell`,
      );
    const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
    const res = await unaryCall<GotoStateResponse>((cb) =>
      this.#stub.gotoState(
        { dut, goal, imageSha256: opts.imageSha256 ?? '', timeoutMs, reflash: opts.reflash ?? false },
        new Metadata(),
        callOptions(timeoutMs + UNARY_DEADLINE_MS),
        cb,
      ),
    );
    return { steps: res.steps, durationMs: res.durationMs };
  }

  /** Starts flashing a cached image (see flashDut for the whole upload + flash + follow). */
  async flash(
    dut: string,
    opts: { imageSha256: string; bmapSha256?: string; verify: boolean },
  ): Promise<FlashResponse> {
    // Powering the DUT off first can take a driver's deadline; the job itself is followed separately.
    return unaryCall<FlashResponse>((cb) =>
      this.#stub.flash(
        { dut, imageSha256: opts.imageSha256, bmapSha256: opts.bmapSha256 ?? '', noVerify: !opts.verify },
        new Metadata(),
        callOptions(UNARY_DEADLINE_MS * 2),
        cb,
      ),
    );
  }
}

/** The DUT an answer carries (the agent always sends it). */
function dutOf(res: { dut?: Dut }): Dut {
  if (!res.dut) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered without the DUT');
  return res.dut;
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
