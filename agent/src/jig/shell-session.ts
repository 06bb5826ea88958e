/**
 * A DUT's login shell as exec sees it: is it at a shell prompt, a login prompt, or somewhere
 * unknown; logging in; running one command between markers; and getting the shell back after a
 * timeout (Ctrl-C, then a sync marker). Everything reacts to bytes as they arrive: the only timers
 * are deadlines and the bounded re-send of a newline to a console that has not answered yet.
 */
import type { RE2JS } from 're2js';
import { JigletError } from '../../../protocol/src/errors.js';
import type { ConsoleChannel } from './console-channel.js';
import { type ExecOutput, ExecParser, execLine, newNonce, syncLine, syncMarker } from './exec-protocol.js';

/** How long a console may stay silent after a newline before another one is sent. */
const PROBE_RESEND_MS = 2000;
/** How long the shell gets to answer a sync line after Ctrl-C, per attempt. */
const RESYNC_MS = 5000;
/** Ctrl-C attempts before the shell is declared lost. */
const RESYNC_ATTEMPTS = 3;
/** Console text remembered between calls (to know whether the shell is still at its prompt). */
const TAIL_CHARS = 512;
/** Terminal control sequences a line editor may send after a prompt (e.g. busybox's ESC [ 6 n). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC is what these sequences start with
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const PRINTK_LINE = /^\[\s*\d+\.\d+\] /;

/** How to log in and what the prompts look like (RE2, matched against the unfinished last line). */
export interface ShellSettings {
  user: string;
  /** The password (read from the passwordFile at each login), or undefined for none. */
  password(): string | undefined;
  loginPrompt: RE2JS;
  passwordPrompt: RE2JS;
  prompt: RE2JS;
  /** Typed once after each login, in the login shell itself (e.g. `stty -echo`). */
  postLogin: readonly string[];
}

/** One command to run. */
export interface ExecRequest {
  command: string;
  timeoutMs: number;
  /** The command's stdin is the console (bytes in `stdin` are typed to it, then Ctrl-D). */
  interactive?: boolean;
  stdin?: Buffer;
  keepKernelLines?: boolean;
}

/** What a run gave back. */
export interface ExecResult extends ExecOutput {
  timedOut: boolean;
  /** Whether this call had to log in first. */
  loggedIn: boolean;
}

/** The shell of one DUT across calls; `invalidate()` when the DUT may have left its prompt. */
export class ShellSession {
  readonly #settings: ShellSettings;
  readonly #dut: string;
  /** Text seen since the last call ended at a prompt; undefined = not known to be at a prompt. */
  #tail: string | undefined;
  #stopTail: (() => void) | undefined;

  constructor(dut: string, settings: ShellSettings) {
    this.#dut = dut;
    this.#settings = settings;
  }

  /** The DUT may no longer be at a shell prompt (powered, rebooted, its capture restarted). */
  invalidate(): void {
    this.#stopTail?.();
    this.#stopTail = undefined;
    this.#tail = undefined;
  }

  /** Whether the last call left the shell at its prompt and nothing since says otherwise. */
  atPrompt(): boolean {
    const tail = this.#tail;
    if (tail === undefined || tail.length >= TAIL_CHARS) return false;
    const s = this.#settings;
    const lines = tail
      .replace(ANSI, '')
      .split('\n')
      .map((l) => l.replace(/\r/g, ''))
      .filter((l) => !PRINTK_LINE.test(l));
    if (lines.some((l) => matches(s.loginPrompt, l) || matches(s.passwordPrompt, l))) return false;
    const last = lines.at(-1) ?? '';
    // Nothing yet: the prompt of the last call is on its way; typed ahead, the shell reads it next.
    return last === '' || matches(s.prompt, last);
  }

  /**
   * Makes sure the console is at a shell prompt, logging in if it shows a login prompt. Returns
   * whether it logged in. Fails with DEADLINE_EXCEEDED (saying what the console showed) at `deadline`.
   */
  async ready(channel: ConsoleChannel, deadline: AbortSignal): Promise<boolean> {
    if (this.atPrompt()) return false;
    this.invalidate();
    const s = this.#settings;
    const screen = new Screen(channel);
    try {
      let loggedIn = false;
      let sentUser = false;
      let sentPassword = false;
      // A login prompt showing already is answered at once. (A shell prompt showing is not trusted:
      // the DUT may have been power cycled since, its new boot log not read yet; a newline tells.)
      const shown = lastLine(channel.recent?.() ?? '');
      if (matches(s.loginPrompt, shown)) {
        sentUser = true;
        loggedIn = true;
        screen.type(`${s.user}\n`);
      } else screen.type('\n');
      for (;;) {
        const seen = await screen.waitLast(
          (line) =>
            matches(s.loginPrompt, line)
              ? 'login'
              : matches(s.passwordPrompt, line)
                ? 'password'
                : matches(s.prompt, line)
                  ? 'prompt'
                  : undefined,
          deadline,
          sentUser ? undefined : PROBE_RESEND_MS,
          () => `no shell or login prompt on the console of ${this.#dut}`,
        );
        if (seen === 'prompt') break;
        if (seen === 'login') {
          if (sentPassword) throw loginFailed(this.#dut, s.user, screen.lastLines());
          // A login prompt right after the name was typed may be the answer to an earlier newline
          // (ours, or a boot's): the name is typed again only once the console has gone quiet.
          if (sentUser && !(await screen.quietFor(PROBE_RESEND_MS, deadline))) continue;
          sentUser = true;
          loggedIn = true;
          screen.type(`${s.user}\n`);
        } else if (seen === 'password') {
          if (!sentUser) {
            // A password prompt nobody asked for: answer it empty, a fresh login prompt follows.
            screen.type('\n');
            continue;
          }
          if (sentPassword) throw loginFailed(this.#dut, s.user, screen.lastLines());
          sentPassword = true;
          screen.type(`${s.password() ?? ''}\n`);
        }
      }
      if (loggedIn) {
        for (const command of s.postLogin) await this.#sync(screen, deadline, `${command}; `);
      }
      return loggedIn;
    } finally {
      screen.close();
    }
  }

  /** Runs one command at the prompt; on timeout interrupts it and gets the shell back. */
  async run(
    channel: ConsoleChannel,
    req: ExecRequest,
    deadline: AbortSignal,
  ): Promise<ExecOutput & { timedOut: boolean }> {
    const nonce = newNonce();
    const parser = new ExecParser(nonce, { keepKernelLines: req.keepKernelLines });
    const screen = new Screen(channel);
    this.invalidate();
    let failure: unknown;
    let typedStdin = false;
    try {
      const done = new Promise<ExecOutput>((resolve, reject) => {
        const finish = (err: unknown): void => reject(err);
        const onAbort = (): void =>
          finish(
            channel.signal.aborted
              ? channel.signal.reason
              : new JigletError('JIGLET_E_DEADLINE_EXCEEDED', 'timeout'),
          );
        const both = AbortSignal.any([deadline, channel.signal]);
        if (both.aborted) return onAbort();
        both.addEventListener('abort', onAbort, { once: true });
        screen.listen((data) => {
          try {
            const out = parser.push(data);
            if (req.interactive && parser.started && !typedStdin) {
              typedStdin = true;
              const bytes = req.stdin ?? Buffer.alloc(0);
              if (bytes.length > 0) channel.write(bytes);
              // Ctrl-D ends a line and, at the start of one, is end-of-file.
              channel.write(bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a ? '\x04\x04' : '\x04');
            }
            if (out) {
              both.removeEventListener('abort', onAbort);
              resolve(out);
            }
          } catch (err) {
            both.removeEventListener('abort', onAbort);
            finish(err);
          }
        });
      });
      // Observed at once: if typing fails below, a later deadline must not reject it unheard.
      done.catch(() => undefined);
      channel.write(execLine(nonce, req.command, !req.interactive));
      const out = await done;
      this.#startTail(channel);
      return { ...out, timedOut: false };
    } catch (err) {
      failure = err;
    } finally {
      screen.close();
    }
    if (channel.signal.aborted) throw channel.signal.reason;
    // Timed out, or printed too much: the command may still run; get the shell back first.
    await this.#interrupt(channel);
    this.#startTail(channel);
    if (failure instanceof JigletError && failure.code === 'JIGLET_E_DEADLINE_EXCEEDED') {
      // What it printed before it was interrupted, as timeout(1) leaves it on a terminal.
      return { ...parser.sofar(), exitCode: 124, timedOut: true };
    }
    throw failure;
  }

  /** Ctrl-C, then a sync marker, until the shell answers (a few attempts). */
  async #interrupt(channel: ConsoleChannel): Promise<void> {
    const screen = new Screen(channel);
    try {
      for (let attempt = 1; attempt <= RESYNC_ATTEMPTS; attempt++) {
        screen.type('\x03');
        // Ctrl-C flushes the tty's input queue: the sync line goes after the shell reacted to it.
        await screen.waitAny(AbortSignal.any([AbortSignal.timeout(RESYNC_MS / 10), channel.signal]));
        try {
          await this.#sync(screen, AbortSignal.any([AbortSignal.timeout(RESYNC_MS), channel.signal]), '');
          return;
        } catch (err) {
          if (channel.signal.aborted) throw channel.signal.reason;
          // The shell is gone (the DUT rebooted, the shell exited): the next call logs in again.
          const last = screen.last();
          if (matches(this.#settings.loginPrompt, last)) return;
          if (matches(this.#settings.passwordPrompt, last)) {
            screen.type('\n');
            return;
          }
          if (attempt === RESYNC_ATTEMPTS)
            throw new JigletError(
              'JIGLET_E_UNAVAILABLE',
              `the shell on ${this.#dut} does not answer after ${RESYNC_ATTEMPTS} Ctrl-C (${(err as Error).message}); power cycle it or look with "jigctl console --dut ${this.#dut}"`,
            );
        }
      }
    } finally {
      screen.close();
    }
  }

  /** Types `before` and a sync line, and waits for its marker. */
  async #sync(screen: Screen, deadline: AbortSignal, before: string): Promise<void> {
    const nonce = newNonce();
    const marker = syncMarker(nonce);
    screen.type(`${before}${syncLine(nonce)}`);
    await screen.waitText(marker, deadline, () => `the shell of ${this.#dut} did not answer`);
  }

  /** Remembers what the console prints after a call, to know next time whether it is still at the prompt. */
  #startTail(channel: ConsoleChannel): void {
    this.#tail = '';
    this.#stopTail = channel.onData((data) => {
      if (this.#tail === undefined || this.#tail.length >= TAIL_CHARS) return;
      let tail = this.#tail + data.toString('latin1');
      // Kernel lines on an idle console say nothing about the shell: they must not fill the tail.
      if (tail.length >= TAIL_CHARS) tail = tail.replace(/(?<=^|\n)\[\s*\d+\.\d+\] [^\n]*\n/g, '');
      this.#tail = tail.slice(0, TAIL_CHARS);
    });
  }
}

/** What the console showed since a Screen started: lines, the unfinished last line, waiters. */
class Screen {
  readonly #channel: ConsoleChannel;
  #text = '';
  #stop: (() => void) | undefined;
  #extra: ((data: Buffer) => void) | undefined;
  #wake: (() => void) | undefined;

  constructor(channel: ConsoleChannel) {
    this.#channel = channel;
    this.#stop = channel.onData((data) => {
      this.#text = (this.#text + data.toString('latin1')).slice(-64 * 1024);
      this.#extra?.(data);
      this.#wake?.();
    });
  }

  listen(fn: (data: Buffer) => void): void {
    this.#extra = fn;
  }

  type(text: string): void {
    this.#text = '';
    this.#channel.write(text);
  }

  close(): void {
    this.#stop?.();
    this.#stop = undefined;
    this.#wake = undefined;
  }

  lastLines(): string[] {
    return this.#text
      .replace(ANSI, '')
      .split('\n')
      .map((l) => l.replace(/\r/g, ''))
      .filter((l) => l !== '')
      .slice(-5);
  }

  /** The unfinished last line, without control sequences and CRs. */
  last(): string {
    return lastLine(this.#text);
  }

  /** Waits until `test(last line)` says something; re-types a newline after `resendMs` of silence. */
  async waitLast<T>(
    test: (line: string) => T | undefined,
    deadline: AbortSignal,
    resendMs: number | undefined,
    what: () => string,
  ): Promise<T> {
    for (;;) {
      const found = test(this.last());
      if (found !== undefined) return found;
      const quiet = resendMs === undefined ? undefined : AbortSignal.timeout(resendMs);
      const woke = await this.#next(quiet ? AbortSignal.any([deadline, quiet]) : deadline);
      if (!woke) {
        if (deadline.aborted) throw this.#timeout(what());
        this.type('\n');
      }
    }
  }

  /** Waits until `text` appears. */
  async waitText(text: string, deadline: AbortSignal, what: () => string): Promise<void> {
    while (!this.#text.includes(text)) {
      if (!(await this.#next(deadline))) throw this.#timeout(what());
    }
  }

  /** True when no byte arrives for `ms`; false as soon as one does. Throws at `deadline`. */
  async quietFor(ms: number, deadline: AbortSignal): Promise<boolean> {
    const woke = await this.#next(AbortSignal.any([deadline, AbortSignal.timeout(ms)]));
    if (deadline.aborted) throw this.#timeout('no shell prompt after logging in');
    return !woke;
  }

  /** Waits for any byte (or the signal). */
  async waitAny(signal: AbortSignal): Promise<void> {
    await this.#next(signal);
  }

  #timeout(what: string): JigletError {
    const seen = this.lastLines().join(' | ');
    return new JigletError(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `${what} in time; it showed: ${seen || '(nothing)'}`,
    );
  }

  /** Resolves true on new bytes, false when `signal` aborts first. */
  #next(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.#wake = undefined;
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#wake = () => {
        this.#wake = undefined;
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
    });
  }
}

/** The unfinished last line of console text, without control sequences and CRs. */
function lastLine(text: string): string {
  const clean = text.replace(ANSI, '');
  return clean.slice(clean.lastIndexOf('\n') + 1).replace(/\r/g, '');
}

function matches(re: RE2JS, line: string): boolean {
  return re.matcher(line).find();
}

function loginFailed(dut: string, user: string, lines: string[]): JigletError {
  return new JigletError(
    'JIGLET_E_FAILED_PRECONDITION',
    `logging in on ${dut} as ${user} failed (the console shows: ${lines.join(' | ')}); check the shell section of the jig description (user, passwordFile)`,
  );
}
