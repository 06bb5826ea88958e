/**
 * jigctl's jig commands: jig (DUT list), power, serial tail and expect (console: console-command.ts). Serial bytes go
 * to stdout exactly as the DUT sent them; capture events go to stderr, one line each, so stdout
 * stays the pure byte stream a script can pipe on.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import { ExpectTimeoutError, type SerialRecord, type SerialStartOptions } from '../jig-client.js';
import { dutTable } from './dut-table.js';
import { EXIT } from './exit-codes.js';
import { dutJson, eventLine, expectJson, humanDuration, recordJson, timeoutReport } from './format.js';
import { connect } from './job-commands.js';
import { parseDuration, parsePairs } from './parse-units.js';
import type { ExpectFlags, JigListFlags, PowerFlags, SerialTailFlags } from './register/jig-commands.js';
import { writeOut } from './write-out.js';

/** Ctrl-]: telnet's escape character, which detaches an interactive console. */
export const ESCAPE_BYTE = 0x1d;
/** How long expect waits when --timeout is not given (the agent's own default). */
const DEFAULT_EXPECT_MS = 30_000;
/** Durations travel as uint32 milliseconds. */
const MAX_UINT32 = 0xffff_ffff;
/** Signals that end a tail or detach a console cleanly. */
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

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

/** Prints one serial record: the DUT's bytes to stdout, a capture event to stderr. */
export async function printRecord(record: SerialRecord): Promise<void> {
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

/** Aborts on Ctrl-C/SIGTERM/SIGHUP and when our stdout's reader went away; returns the undo. */
export function abortOnStop(controller: AbortController): () => void {
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
