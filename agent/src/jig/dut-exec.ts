/**
 * Exec on a DUT's serial console, as the agent runs it: the caller's lease is checked by the RPC
 * layer; here the console writer is taken for the call (refused, naming the holder, while someone
 * else has it), the shell is reached (logging in if the console shows a login prompt), and the
 * command runs between markers. Viewers keep seeing every byte: exec only types and listens.
 */
import { readFileSync } from 'node:fs';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import { dutChannel } from './console-channel.js';
import type { DutRuntime } from './dut-runtime.js';
import { compilePattern } from './line-matcher.js';
import { type ExecRequest, type ExecResult, ShellSession, type ShellSettings } from './shell-session.js';

/** The shell sessions of an agent's DUTs, one per DUT, made on first use. */
export class DutShells {
  readonly #sessions = new WeakMap<DutRuntime, ShellSession>();
  /** The exec calls of each DUT run one after another: a console has one shell. */
  readonly #queues = new WeakMap<DutRuntime, Promise<unknown>>();

  /** The DUT's shell session; forgets the prompt whenever the DUT is powered or its capture restarts. */
  session(dut: DutRuntime): ShellSession {
    let session = this.#sessions.get(dut);
    if (!session) {
      const made = new ShellSession(dut.dut.name, settingsOf(dut));
      dut.on('capture', () => made.invalidate());
      dut.on('power', () => made.invalidate());
      dut.on('closed', () => made.invalidate());
      this.#sessions.set(dut, made);
      session = made;
    }
    return session;
  }

  /**
   * Runs `req` on the DUT as `who` (under `lease` when the DUT is leased). `signal` aborts the
   * command as its timeout does (the client went away): Ctrl-C, and the shell is taken back.
   */
  exec(
    dut: DutRuntime,
    who: Identity,
    lease: string | undefined,
    req: ExecRequest,
    signal?: AbortSignal,
  ): Promise<ExecResult> {
    // Calls made at the same time (Promise.all in a test) wait for their turn instead of being
    // refused as "console in use"; a caller that went away meanwhile is skipped.
    return this.#inTurn(dut, () => {
      if (signal?.aborted) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the client went away');
      return this.#execNow(dut, who, lease, req, signal);
    });
  }

  /** Runs `fn` after the DUT's calls queued before it. */
  #inTurn<T>(dut: DutRuntime, fn: () => Promise<T>): Promise<T> {
    const turn = (this.#queues.get(dut) ?? Promise.resolve()).then(fn);
    this.#queues.set(
      dut,
      turn.catch(() => undefined),
    );
    return turn;
  }

  async #execNow(
    dut: DutRuntime,
    who: Identity,
    lease: string | undefined,
    req: ExecRequest,
    signal?: AbortSignal,
  ): Promise<ExecResult> {
    if (dut.power.state === 'off')
      throw failedPrecondition(
        `${dut.dut.name} is powered off: switch it on first (jigctl power on --dut ${dut.dut.name}, or jigctl dut goto ${dut.dut.name} shell)`,
      );
    const writer = dut.attachConsole(who, false, lease);
    const channel = dutChannel(dut, writer);
    try {
      const timeout = AbortSignal.timeout(req.timeoutMs);
      const deadline = signal ? AbortSignal.any([timeout, signal]) : timeout;
      const session = this.session(dut);
      const loggedIn = await session.ready(channel, deadline);
      const out = await session.run(channel, req, deadline);
      return { ...out, loggedIn };
    } finally {
      channel.close();
      writer.release();
    }
  }

  /** Reaches the shell prompt (logging in if needed) without running anything; true if it logged in. */
  reachShell(dut: DutRuntime, who: Identity, lease: string | undefined, timeoutMs: number): Promise<boolean> {
    return this.#inTurn(dut, () => this.#reachShellNow(dut, who, lease, timeoutMs));
  }

  async #reachShellNow(
    dut: DutRuntime,
    who: Identity,
    lease: string | undefined,
    timeoutMs: number,
  ): Promise<boolean> {
    const writer = dut.attachConsole(who, false, lease);
    const channel = dutChannel(dut, writer);
    try {
      return await this.session(dut).ready(channel, AbortSignal.timeout(timeoutMs));
    } finally {
      channel.close();
      writer.release();
    }
  }
}

/** The DUT's shell section, compiled; the password is read from its file at each login. */
function settingsOf(dut: DutRuntime): ShellSettings {
  const shell = dut.dut.shell;
  const file = shell.passwordFile;
  const password = (): string | undefined => {
    if (!file) return undefined;
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw failedPrecondition(
        `cannot read the password file of ${dut.dut.name}'s shell (passwordFile in the jig description): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  };
  return {
    user: shell.user,
    password,
    loginPrompt: compilePattern(shell.loginPrompt, false),
    passwordPrompt: compilePattern(shell.passwordPrompt, false),
    prompt: compilePattern(shell.prompt, false),
    postLogin: shell.postLogin,
  };
}
