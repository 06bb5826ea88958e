/**
 * Where the agent's log goes and in which form: pino's JSON lines for journald, files and log
 * shippers, or one readable line per record when a person watches a terminal. Our own small
 * formatter rather than pino-pretty: the agent logs little, and this is all it needs.
 */
import { writeSync } from 'node:fs';
import { type DestinationStream, pino } from 'pino';

/** json: pino's lines as they are; pretty: "12:00:01.123 INFO  message key=value". */
export type LogFormat = 'json' | 'pretty';

const LEVELS: Readonly<Record<number, [name: string, color: string]>> = {
  10: ['TRACE', '\x1b[90m'],
  20: ['DEBUG', '\x1b[36m'],
  30: ['INFO', '\x1b[32m'],
  40: ['WARN', '\x1b[33m'],
  50: ['ERROR', '\x1b[31m'],
  60: ['FATAL', '\x1b[41m'],
};

/** Fields every record has, shown in the line's head rather than as key=value. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** A bare word as it is, anything else as JSON (quoted strings, arrays, objects). */
function fieldValue(v: unknown): string {
  return typeof v === 'string' && v !== '' && !/[\s"=]/.test(v) ? v : JSON.stringify(v);
}

/** One pino JSON line as a readable line (a stack trace follows on indented lines). */
export function prettyLine(json: string, color: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const [name, hue] = LEVELS[rec.level as number] ?? [String(rec.level), ''];
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now());
  const clock = `${time.toTimeString().slice(0, 8)}.${String(time.getMilliseconds()).padStart(3, '0')}`;
  const level = color ? `${hue}${name.padEnd(5)}\x1b[0m` : name.padEnd(5);
  let stack = '';
  const fields = Object.entries(rec)
    .filter(([k]) => !HEAD_FIELDS.has(k))
    .map(([k, v]) => {
      const err = v as { message?: unknown; stack?: unknown } | null;
      if (k === 'err' && err && typeof err.message === 'string') {
        if (typeof err.stack === 'string')
          stack = `\n    ${err.stack.split('\n').slice(1).join('\n    ').trim()}`;
        return `err=${fieldValue(err.message)}`;
      }
      return `${k}=${fieldValue(v)}`;
    });
  return `${clock} ${level} ${String(rec.msg ?? '')}${fields.length ? ` ${fields.join(' ')}` : ''}${stack}\n`;
}

/** The form a log takes when none was asked for: readable on a terminal, JSON otherwise. */
export function defaultLogFormat(stream: { isTTY?: boolean }): LogFormat {
  return stream.isTTY ? 'pretty' : 'json';
}

/**
 * A synchronous destination on stderr: a fatal line must be in the log before process.exit,
 * and an agent logs little.
 */
export function logDestination(format: LogFormat): DestinationStream {
  if (format === 'json') return pino.destination({ dest: 2, sync: true });
  const color = process.stderr.isTTY === true && !process.env.NO_COLOR;
  return { write: (line: string) => void writeSync(2, prettyLine(line, color)) };
}
