/**
 * The jig half of the client library: DUTs, power, serial tail, console, expect, exec and goto.
 * Reached as `client.jig`; it shares the JigletClient's channel (one TLS connection per agent).
 * The calls themselves live by concern: jig-dut-calls.ts (DUT list, power, health, flash),
 * jig-serial-calls.ts (serial tail, console, expect), jig-exec-calls.ts (exec, goto).
 */
import type { ChannelCredentials, Client, Interceptor } from '@grpc/grpc-js';
import { type Dut, type FlashResponse, JigServiceClient } from '../../protocol/gen/jiglet/v1/jig.js';
import {
  checkHealth,
  type DutStateName,
  type HealthCheckResult,
  listDuts,
  type PowerActionName,
  type PowerResult,
  power,
  setDutState,
  startFlash,
} from './jig-dut-calls.js';
import {
  type DutGoalName,
  type ExecOptions,
  type ExecResult,
  execOnDut,
  type GotoResult,
  gotoState,
} from './jig-exec-calls.js';
import {
  attachConsole,
  type ConsoleSession,
  type ExpectOptions,
  type ExpectResult,
  expectLine,
  type SerialRecord,
  type SerialStartOptions,
  serialTail,
} from './jig-serial-calls.js';

export {
  type Dut,
  DutHealth,
  type ExpectMatch,
  PowerState,
  SerialState,
} from '../../protocol/gen/jiglet/v1/jig.js';
export type { DutStateName, HealthCheckResult, PowerActionName, PowerResult } from './jig-dut-calls.js';
export {
  type DutGoalName,
  type ExecOptions,
  type ExecResult,
  type ExecTransport,
  execViaOf,
  type GotoResult,
  transportOf,
} from './jig-exec-calls.js';
export {
  type ConsoleSession,
  type ExpectOptions,
  type ExpectResult,
  ExpectTimeoutError,
  type SerialRecord,
  type SerialStartOptions,
} from './jig-serial-calls.js';

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
  duts(labels: Record<string, string> = {}): Promise<Dut[]> {
    return listDuts(this.#stub, labels);
  }

  /** Switches or reads a DUT's power; resolves when the driver job has finished. */
  power(dut: string, action: PowerActionName, opts: { offTimeMs?: number } = {}): Promise<PowerResult> {
    return power(this.#stub, dut, action, opts);
  }

  /**
   * A DUT's serial log as records. With `follow`, keeps going (across capture restarts) until
   * `signal` aborts or the loop is left; leaving the loop cancels the stream on the agent.
   */
  serial(
    dut: string,
    opts: SerialStartOptions & { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<SerialRecord, void, undefined> {
    return serialTail(this.#stub, dut, opts);
  }

  /**
   * Attaches as the DUT's one console writer; resolves once attached. `takeOver` (admin) takes the
   * console from whoever holds it. The session ends when close() is called or the agent ends it.
   */
  console(dut: string, opts: { takeOver?: boolean } = {}): Promise<ConsoleSession> {
    return attachConsole(this.#stub, dut, opts);
  }

  /**
   * Waits on the agent for a serial line matching `pattern` (RE2 syntax); resolves with it, or
   * rejects with ExpectTimeoutError holding the last lines seen.
   */
  expect(dut: string, pattern: string, opts: ExpectOptions = {}): Promise<ExpectResult> {
    return expectLine(this.#stub, dut, pattern, opts);
  }

  /**
   * Sets a DUT's health (admin): good puts it back in service, bad or maintenance keeps new
   * claims off it (a lease held now goes on). Resolves with the DUT as it is now.
   */
  setState(dut: string, state: DutStateName, reason = ''): Promise<Dut> {
    return setDutState(this.#stub, dut, state, reason);
  }

  /** Runs the DUT's health check now (admin) and resolves when it has finished; its result sets the DUT's health. */
  checkHealth(dut: string): Promise<HealthCheckResult> {
    return checkHealth(this.#stub, dut);
  }

  /**
   * Runs a command on the DUT's shell over its serial console (or SSH, `via`) and resolves with its output and
   * exit code (124 when it ran past `timeoutMs`, default 30 s, and was interrupted). A string is a
   * shell command line; an array is a program and its arguments, quoted for the DUT's shell.
   */
  exec(dut: string, command: string | readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return execOnDut(this.#stub, dut, command, opts);
  }

  /**
   * Brings a DUT to a state — off, booted (boot seen since power-on) or shell (logged in) —
   * optionally running a cached image (flashed first unless the DUT already got it, or `reflash`).
   * Idempotent: only what is missing is done. Resolves with the steps taken.
   */
  gotoState(
    dut: string,
    state: DutGoalName,
    opts: { imageSha256?: string; timeoutMs?: number; reflash?: boolean } = {},
  ): Promise<GotoResult> {
    return gotoState(this.#stub, dut, state, opts);
  }

  /** Starts flashing a cached image (see flashDut for the whole upload + flash + follow). */
  flash(
    dut: string,
    opts: { imageSha256: string; bmapSha256?: string; verify: boolean; followUpload?: boolean },
  ): Promise<FlashResponse> {
    return startFlash(this.#stub, dut, opts);
  }
}
