/**
 * `jigctl console`: attaches as the DUT's one console writer. On a terminal keys go over raw and
 * Ctrl-] detaches. With stdin piped (a script, CI), stdin's bytes are sent as they are, and the
 * DUT's answer is shown after stdin ends: until `--until PATTERN` matches a line (exit 0; exit 1
 * if it has not within --timeout), or else until the DUT has been quiet for --drain (default 1 s;
 * at most --timeout, since a DUT printing kernel noise may never be quiet).
 * Detaching at once at stdin's end would show nothing of what the input caused.
 */

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { RE2JS } from 're2js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { ConsoleSession, SerialRecord } from '../jig-client.js';
import { EXIT } from './exit-codes.js';
import { humanDuration } from './format.js';
import { abortOnStop, ESCAPE_BYTE, printRecord } from './jig-commands.js';
import { connect } from './job-commands.js';
import { parseDuration } from './parse-units.js';
import type { ConsoleFlags } from './register/dut-shell-commands.js';

/** The agent refuses console messages larger than this (MAX_CONSOLE_INPUT in jig-service.ts). */
const MAX_INPUT_MESSAGE = 64 * 1024;
/** How long a piped console waits for quiet after stdin ended, when --drain is not given. */
const DEFAULT_DRAIN_MS = 1000;
/**
 * How long a piped console waits for --until's pattern, when --timeout is not given; with --drain
 * it bounds the wait for quiet, which a DUT printing kernel noise may never give.
 */
const DEFAULT_TIMEOUT_MS = 30_000;
/** A line longer than this is tested and cut, so a DUT that never prints "\n" costs bounded memory. */
const MAX_LINE_CHARS = 16 * 1024;
/** Lines shown when --until's pattern never came. */
const LAST_LINES = 10;

/** What the piped console waits for once stdin has ended. */
type Finish =
  | { kind: 'drain'; quietMs: number; timeoutMs: number }
  | { kind: 'until'; re: RE2JS; pattern: string; timeoutMs: number };

/** The console command; see the file's comment. */
export async function consoleCommand(flags: ConsoleFlags): Promise<number> {
  if (flags.web) return webConsoleCommand(flags);
  if (flags.open) throw invalidArgument('--open goes with --web');
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  const finish = finishOf(flags, tty);
  const client = connect(flags);
  const stop = new AbortController();
  const undo = abortOnStop(stop);
  const restoreTty = (): void => {
    if (stdin.isRaw) stdin.setRawMode(false);
  };
  process.once('exit', restoreTty);
  try {
    const session = await client.jig.console(flags.dut, { takeOver: flags.takeOver ?? false });
    if (tty) {
      stdin.setRawMode(true);
      process.stderr.write(`Connected to ${flags.dut}. Escape character is '^]'.\n`);
    }
    const ended = new AbortController();
    const watch = new OutputWatch(finish?.kind === 'until' ? finish.re : undefined);
    const output = (async () => {
      for await (const record of session.output) {
        await printRecord(record);
        watch.saw(record);
      }
    })().finally(() => ended.abort());
    output.catch(() => undefined);
    const attachedAt = Date.now();
    const done = AbortSignal.any([stop.signal, ended.signal, watch.matched.signal]);
    // A failed write means the session failed: the output side reports why.
    await forwardInput(session, tty, done).catch(() => undefined);
    let code = 0;
    if (finish && !done.aborted) {
      code =
        finish.kind === 'drain'
          ? await watch
              .quiet(finish.quietMs, AbortSignal.any([done, AbortSignal.timeout(finish.timeoutMs)]))
              .then(() => 0)
          : await watch.until(attachedAt + finish.timeoutMs, done).then((matched) => {
              if (matched || stop.signal.aborted || ended.signal.aborted) return 0;
              process.stderr.write(untilReport(finish, watch.lastLines));
              return EXIT.failure;
            });
    }
    const detaching = !ended.signal.aborted;
    // close() waits for the call's status, which has passed already if the agent ended the session.
    if (detaching) await Promise.race([session.close(), output.catch(() => undefined)]);
    // On a terminal the DUT left the cursor mid-line (at a prompt): end the line before we speak.
    await output.catch((err: unknown) => {
      if (tty) process.stderr.write('\n');
      throw err;
    });
    if (!detaching) {
      process.stderr.write(`${tty ? '\n' : ''}jigctl: the agent ended the console of ${flags.dut}\n`);
      return EXIT.failure;
    }
    if (tty) process.stderr.write('\nConnection closed.\n');
    return code;
  } finally {
    restoreTty();
    process.off('exit', restoreTty);
    undo();
    // A stdin still open (a TTY, or a pipe when the agent ended first) would keep us alive.
    stdin.destroy();
    client.close();
  }
}

/** What a piped console waits for after stdin's end; undefined on a terminal. */
function finishOf(flags: ConsoleFlags, tty: boolean): Finish | undefined {
  const given = (['until', 'drain', 'timeout'] as const).filter((f) => flags[f] !== undefined);
  if (tty) {
    if (given.length > 0)
      throw invalidArgument(`--${given[0]} applies when stdin is piped; on a terminal, Ctrl-] detaches`);
    return undefined;
  }
  const timeoutMs =
    flags.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration('--timeout', flags.timeout);
  if (timeoutMs <= 0) throw invalidArgument('--timeout must be longer than 0');
  if (flags.until !== undefined) {
    if (flags.drain !== undefined) throw invalidArgument('give --until or --drain, not both');
    return { kind: 'until', re: compileUntil(flags.until), pattern: flags.until, timeoutMs };
  }
  const quietMs = flags.drain === undefined ? DEFAULT_DRAIN_MS : parseDuration('--drain', flags.drain);
  return { kind: 'drain', quietMs, timeoutMs };
}

/** --until's pattern in RE2 syntax, as `jigctl expect` takes it. */
function compileUntil(pattern: string): RE2JS {
  if (pattern === '') throw invalidArgument('--until needs a pattern');
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    throw invalidArgument(
      `--until ${JSON.stringify(pattern.slice(0, 200))} does not compile: ${(err as Error).message} (RE2 syntax: no backreferences or lookaround)`,
    );
  }
}

function untilReport(finish: Extract<Finish, { kind: 'until' }>, lastLines: string[]): string {
  const lines = [`jigctl: no line matched /${finish.pattern}/ within ${humanDuration(finish.timeoutMs)}`];
  if (lastLines.length === 0) lines.push('  nothing was printed');
  else lines.push('  last lines seen:', ...lastLines.map((l) => `    ${l}`));
  return `${lines.join('\n')}\n`;
}

/**
 * Watches the DUT's output: when it last printed, and (with a pattern) whether a line matched,
 * the unfinished last line included, because prompts end without a newline.
 */
class OutputWatch {
  readonly matched = new AbortController();
  readonly #re: RE2JS | undefined;
  readonly #decoder = new TextDecoder('utf-8');
  #partial = '';
  readonly #last: string[] = [];
  #lastOutputAt = Date.now();
  #wake: (() => void) | undefined;

  constructor(re: RE2JS | undefined) {
    this.#re = re;
  }

  /** The last complete lines and the unfinished one, oldest first. */
  get lastLines(): string[] {
    return (this.#partial === '' ? this.#last : [...this.#last, this.#partial]).slice(-LAST_LINES);
  }

  saw(record: SerialRecord): void {
    if (record.type !== 'chunk') return;
    this.#lastOutputAt = Date.now();
    if (this.#re && !this.matched.signal.aborted) {
      const lines = (this.#partial + this.#decoder.decode(record.data, { stream: true })).split('\n');
      this.#partial = lines.pop()!.slice(-MAX_LINE_CHARS);
      for (const raw of lines) {
        const line = raw.replace(/\r+$/, '');
        this.#last.push(line);
        if (this.#last.length > LAST_LINES) this.#last.shift();
        if (this.#re.matcher(line).find()) this.matched.abort();
      }
      if (this.#re.matcher(this.#partial.replace(/\r+$/, '')).find()) this.matched.abort();
    }
    this.#wake?.();
  }

  /** Resolves once nothing was printed for `quietMs` from now, or `signal` aborts. */
  async quiet(quietMs: number, signal: AbortSignal): Promise<void> {
    const from = Date.now();
    while (!signal.aborted) {
      const left = Math.max(from, this.#lastOutputAt) + quietMs - Date.now();
      if (left <= 0) return;
      await this.#sleep(left, signal, false);
    }
  }

  /** True once the pattern matched; false at `deadline` or when `signal` aborts first. */
  async until(deadline: number, signal: AbortSignal): Promise<boolean> {
    const left = deadline - Date.now();
    if (!this.matched.signal.aborted && left > 0) await this.#sleep(left, signal, true);
    return this.matched.signal.aborted;
  }

  /** Waits `ms`, or less: new output (when `onlyAbort` is false) or `signal` end the wait early. */
  #sleep(ms: number, signal: AbortSignal, onlyAbort: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.matched.signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.matched.signal.addEventListener('abort', done, { once: true });
      if (!onlyAbort) this.#wake = done;
    });
  }
}

/**
 * `jigctl console --web --dut D`: prints a single-use link to the agent's browser console, bound
 * to our identity and role (read-only unless we hold the DUT's lease and may write).
 */
async function webConsoleCommand(flags: ConsoleFlags): Promise<number> {
  if (flags.takeOver) throw invalidArgument('--take-over applies to a console in this terminal, not --web');
  const client = connect(flags);
  try {
    const { url, expires } = await client.web.ticket(flags.dut);
    process.stdout.write(`${url}\n`);
    const seconds = Math.max(0, Math.round((expires.getTime() - Date.now()) / 1000));
    process.stderr.write(`jigctl: the link opens one browser session; use it within ${seconds} s\n`);
    if (flags.open) openInBrowser(url);
    return 0;
  } finally {
    client.close();
  }
}

/** Hands the link to xdg-open, if this host has one; the link stays printed either way. */
function openInBrowser(url: string): void {
  const xdgOpen = (process.env.PATH ?? '')
    .split(':')
    .map((dir) => join(dir || '.', 'xdg-open'))
    .find((path) => {
      try {
        accessSync(path, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  if (!xdgOpen) {
    process.stderr.write('jigctl: xdg-open is not installed; open the link by hand\n');
    return;
  }
  // No shell: the URL is one argument. Detached, so closing jigctl leaves the browser alone.
  const child = spawn(xdgOpen, [url], { detached: true, stdio: 'ignore' });
  child.on('error', (err) => process.stderr.write(`jigctl: xdg-open failed: ${err.message}\n`));
  child.unref();
}

/**
 * Forwards stdin to the console until it ends, Ctrl-] is typed (TTY only: a pipe's bytes are
 * data) or `signal` aborts. One write at a time, stdin paused meanwhile: backpressure.
 */
function forwardInput(session: ConsoleSession, tty: boolean, signal: AbortSignal): Promise<void> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      stdin.off('data', onData).off('end', onEnd).off('error', settle);
      signal.removeEventListener('abort', onEnd);
      stdin.pause();
      if (err === undefined) resolve();
      else reject(err);
    };
    const onEnd = (): void => settle();
    const onData = (chunk: Buffer): void => {
      const escapeAt = tty ? chunk.indexOf(ESCAPE_BYTE) : -1;
      const data = escapeAt >= 0 ? chunk.subarray(0, escapeAt) : chunk;
      stdin.pause();
      send(session, data).then(
        () => (escapeAt >= 0 ? settle() : settled || stdin.resume()),
        (err: unknown) => settle(err),
      );
    };
    if (signal.aborted) return resolve();
    stdin.on('data', onData).once('end', onEnd).once('error', settle);
    signal.addEventListener('abort', onEnd, { once: true });
    stdin.resume();
  });
}

async function send(session: ConsoleSession, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += MAX_INPUT_MESSAGE)
    await session.write(data.subarray(at, at + MAX_INPUT_MESSAGE));
}
