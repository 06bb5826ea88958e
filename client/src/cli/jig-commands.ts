/**
 * jigctl's jig commands: jig (DUT list), power, serial tail, console and expect. Serial bytes go
 * to stdout exactly as the DUT sent them; capture events go to stderr, one line each, so stdout
 * stays the pure byte stream a script can pipe on.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { ConnectionFlags } from '../connection.js';
import {
  type ConsoleSession,
  ExpectTimeoutError,
  type PowerActionName,
  type SerialRecord,
  type SerialStartOptions,
} from '../jig-client.js';
import { dutTable } from './dut-table.js';
import { EXIT } from './exit-codes.js';
import { dutJson, eventLine, expectJson, humanDuration, recordJson, timeoutReport } from './format.js';
import { connect } from './job-commands.js';
import { parseDuration, parsePairs } from './parse-units.js';
import { writeOut } from './write-out.js';

/** Ctrl-]: telnet's escape character, which detaches an interactive console. */
export const ESCAPE_BYTE = 0x1d;
/** How long expect waits when --timeout is not given (the agent's own default). */
const DEFAULT_EXPECT_MS = 30_000;
/** Durations travel as uint32 milliseconds. */
const MAX_UINT32 = 0xffff_ffff;
/** The agent refuses console messages larger than this (MAX_CONSOLE_INPUT in jig-service.ts). */
const MAX_INPUT_MESSAGE = 64 * 1024;
/** Signals that end a tail or detach a console cleanly. */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** `jigctl jig` flags. */
export interface JigListFlags extends ConnectionFlags {
  output?: string;
  label?: string[];
}

/** `jigctl power` flags. */
export interface PowerFlags extends ConnectionFlags {
  action: PowerActionName;
  dut: string;
  offTime?: string;
  output?: string;
}

/** `jigctl serial tail` flags. */
export interface SerialTailFlags extends ConnectionFlags {
  dut: string;
  follow?: boolean;
  offset?: number;
  since?: string;
  fromEnd?: boolean;
  output?: string;
}

/** `jigctl console` flags. */
export interface ConsoleFlags extends ConnectionFlags {
  dut: string;
  takeOver?: boolean;
  /** Print a browser link to the console instead of attaching here. */
  web?: boolean;
  /** With --web: also open the link with xdg-open. */
  open?: boolean;
}

/** `jigctl expect` flags. */
export interface ExpectFlags extends ConnectionFlags {
  dut: string;
  pattern: string;
  timeout?: string;
  fromNow?: boolean;
  sincePowerOn?: boolean;
  offset?: number;
  ignoreCase?: boolean;
  output?: string;
}

/** `jigctl jig`: the DUTs with their labels, power and serial state. */
export async function jigListCommand(flags: JigListFlags): Promise<number> {
  const labels = parsePairs('--label', flags.label ?? [], 'key=value');
  const client = connect(flags);
  try {
    const duts = await client.jig.duts(labels);
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify(duts.map(dutJson), null, 2)}\n`);
      return 0;
    }
    if (duts.length === 0) {
      const which = Object.keys(labels).length > 0 ? ` has the labels ${(flags.label ?? []).join(', ')}` : '';
      process.stdout.write(which ? `no DUT${which}\n` : 'no DUTs: the jig description names none\n');
      return 0;
    }
    process.stdout.write(`${dutTable(duts, { wide: flags.output === 'wide' })}\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl power on|off|cycle|status --dut D`. */
export async function powerCommand(flags: PowerFlags): Promise<number> {
  const offTimeMs =
    flags.offTime === undefined
      ? undefined
      : uint32('--off-time', parseDuration('--off-time', flags.offTime));
  const client = connect(flags);
  try {
    const r = await client.jig.power(flags.dut, flags.action, { offTimeMs });
    if (flags.output === 'json') process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else if (flags.action === 'status') process.stdout.write(`${r.state}\n`);
    else process.stdout.write(`${r.dut}: ${r.state} (${humanDuration(r.durationMs)}, job ${r.jobId})\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl serial tail --dut D`: raw bytes (events on stderr) or one JSON record per line. */
export async function serialTailCommand(flags: SerialTailFlags): Promise<number> {
  const start = serialStart(flags);
  const client = connect(flags);
  const stop = new AbortController();
  const undo = abortOnStop(stop);
  try {
    for await (const record of client.jig.serial(flags.dut, {
      ...start,
      follow: flags.follow ?? false,
      signal: stop.signal,
    })) {
      if (flags.output === 'json') await writeStdout(Buffer.from(`${JSON.stringify(recordJson(record))}\n`));
      else await printRecord(record);
      if (stop.signal.aborted) break;
    }
    return 0;
  } finally {
    undo();
    client.close();
  }
}

/**
 * `jigctl console --dut D`: attaches as the DUT's one writer. On a TTY, keystrokes go over raw
 * and Ctrl-] detaches; otherwise stdin is forwarded as it is and its end detaches.
 */
export async function consoleCommand(flags: ConsoleFlags): Promise<number> {
  if (flags.web) return webConsoleCommand(flags);
  if (flags.open) throw invalidArgument('--open goes with --web');
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
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
    const output = printRecords(session.output).finally(() => ended.abort());
    output.catch(() => undefined);
    // A failed write means the session failed: the output side reports why.
    await forwardInput(session, tty, AbortSignal.any([stop.signal, ended.signal])).catch(() => undefined);
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
    return 0;
  } finally {
    restoreTty();
    process.off('exit', restoreTty);
    undo();
    // A stdin still open (a TTY, or a pipe when the agent ended first) would keep us alive.
    stdin.destroy();
    client.close();
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

/** `jigctl expect --dut D --pattern RE`: waits on the agent; prints the line, or why not. */
export async function expectCommand(flags: ExpectFlags): Promise<number> {
  const timeoutMs =
    flags.timeout === undefined
      ? DEFAULT_EXPECT_MS
      : uint32('--timeout', parseDuration('--timeout', flags.timeout));
  if (timeoutMs === 0) throw invalidArgument('--timeout must be longer than 0');
  const offset = flags.offset === undefined ? undefined : offsetFlag(flags.offset);
  const client = connect(flags);
  try {
    const found = await client.jig.expect(flags.dut, flags.pattern, {
      timeoutMs,
      offset,
      fromNow: flags.fromNow ?? false,
      sincePowerOn: flags.sincePowerOn ?? false,
      ignoreCase: flags.ignoreCase ?? false,
    });
    process.stdout.write(
      flags.output === 'json' ? `${JSON.stringify(expectJson(found), null, 2)}\n` : `${found.line}\n`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof ExpectTimeoutError)) throw err;
    if (flags.output === 'json') {
      const { pattern, lastLines, offset: reached, serialState } = err;
      const report = { matched: false, pattern, timeoutMs, lastLines, offset: reached, serialState };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    }
    process.stderr.write(timeoutReport(err));
    return EXIT.failure;
  } finally {
    client.close();
  }
}

async function printRecord(record: SerialRecord): Promise<void> {
  if (record.type === 'chunk') await writeStdout(record.data);
  else process.stderr.write(eventLine(record));
}

/**
 * Writes to stdout with backpressure. Once its reader has gone (EPIPE, as after `| head`), the
 * bytes are dropped: abortOnStop() has then asked the command to finish cleanly.
 */
async function writeStdout(data: Buffer): Promise<void> {
  if (process.stdout.destroyed) return;
  try {
    await writeOut(process.stdout, data);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
  }
}

async function printRecords(records: AsyncIterable<SerialRecord>): Promise<void> {
  for await (const record of records) await printRecord(record);
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

/** Aborts on Ctrl-C/SIGTERM/SIGHUP and when our stdout's reader went away; returns the undo. */
function abortOnStop(controller: AbortController): () => void {
  const abort = (): void => controller.abort();
  for (const s of STOP_SIGNALS) process.on(s, abort);
  // `jigctl serial tail -f | grep -m1 login:` ends with EPIPE on our stdout: a normal end.
  process.stdout.on('error', abort);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, abort);
    process.stdout.off('error', abort);
  };
}

/** --offset, --since (a duration ago, or an ISO time) or --from-end as a serial start. */
function serialStart(flags: SerialTailFlags): SerialStartOptions {
  if (flags.offset !== undefined) return { offset: offsetFlag(flags.offset) };
  if (flags.fromEnd) return { fromEnd: true };
  if (flags.since === undefined) return {};
  const text = flags.since.trim();
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const since = new Date(text);
    if (Number.isNaN(since.getTime())) throw invalidArgument(`--since "${text}" is not a valid time`);
    return { since };
  }
  try {
    return { since: new Date(Date.now() - parseDuration('--since', text)) };
  } catch {
    // parseDuration's message would offer durations only; --since takes times as well.
    throw invalidArgument(`--since "${text}" is neither a time ago (90s, 10m, 2h) nor an ISO time`);
  }
}

function offsetFlag(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`--offset must be a byte offset (0 or more)`);
  return n;
}

function uint32(flag: string, ms: number): number {
  if (ms > MAX_UINT32) throw invalidArgument(`${flag} is too long`);
  return ms;
}
