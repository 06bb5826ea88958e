/**
 * The JSON lines a `jig-driver` job prints: the wire between a driver process and everything that
 * reads its log (the agent's power driver and run record, the metrics, the client's progress bar).
 * One event a line, one key naming its kind:
 *   stderr  {"step":{…}}                   one hardware action (recorded by `step()`, step.ts)
 *           {"failed":{"code","message"}}  why the driver is about to exit non-zero; the human
 *                                          `jig-driver: …` line still follows it, last
 *   stdout  {"flash":{…}}                  flash progress, at phase changes and ≤ 4 a second
 *   `jig-driver power-serve` (one long-lived power driver per DUT):
 *   stdin   {"id":1,"action":"cycle","offTimeMs":500}           a request
 *   stdout  {"id":1,"ok":true,"state":"on"}                      its answer, or
 *           {"id":1,"ok":false,"code":"JIGLET_E_…","error":"…"}  its failure
 * Any other line (a human message, a tool's own output, a torn or over-long line) is kept as text.
 * Writers use `driverEventLine`, readers `readDriverLine` or `DriverEventReader`; nothing else
 * builds or parses these lines.
 */
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import { type ErrorCode, isErrorCode, JigletError } from './errors.js';

/** A coded failure as a driver reports it (a step's error, a `failed` line, a power answer). */
export interface DriverFailure {
  /** The driver's error code; an unknown code reads as JIGLET_E_INTERNAL. */
  code: ErrorCode;
  /** What went wrong, in the driver's words. */
  message: string;
}

/** A value worth recording as a step argument. */
export type StepArg = string | number | boolean | null;

/**
 * One hardware action, as `step()` records it (labgrid's `@step`): its title, what it acted on,
 * how long it took, what it read back and how it failed. No `error` means it succeeded.
 */
export interface StepEvent {
  /** The DUT acted on, when the driver knows it. */
  dut?: string;
  /** The driver that acted, e.g. `tasmota`, `sdwire`. */
  driver?: string;
  /** The step's title: the action taken (`on`, `to-host`, `write`). */
  action: string;
  /** What it acted on (an image, a device), when there is one. */
  target?: string;
  /** Other arguments worth recording. */
  args?: Record<string, StepArg>;
  /** Wall-clock duration, whole milliseconds. */
  durationMs: number;
  /** What the step read back (a power state, a mux side), when it reads something. */
  result?: string;
  /** How it failed, when it did. */
  error?: DriverFailure;
}

/** The phases of a flash, in order. */
export const FLASH_PHASES = ['host', 'wait-device', 'write', 'sync', 'verify', 'dut', 'done'] as const;
/** One phase of a flash. */
export type FlashPhase = (typeof FLASH_PHASES)[number];

/**
 * One flash progress report. In `write`, bytesRead counts decompressed image bytes and totalBytes
 * is the image size; in `verify`, bytesRead counts bytes read back and totalBytes is what was
 * written. mbPerS (10^6 bytes/s) is bytesRead's rate since the phase began; phases that move no
 * data report 0 and etaS null; `done` reports etaS 0.
 */
export interface FlashProgress {
  /** The current phase. */
  phase: FlashPhase;
  /** Bytes written to the medium so far. */
  bytesWritten: number;
  /** Bytes read so far in this phase (see above). */
  bytesRead: number;
  /** What bytesRead runs up to, when known. */
  totalBytes: number | null;
  /** Rate of bytesRead in this phase, MB/s, one decimal. */
  mbPerS: number;
  /** Seconds left in this phase, when the total and a rate are known. */
  etaS: number | null;
}

/** The actions a power-serve request may ask for. */
export const POWER_ACTIONS = ['on', 'off', 'cycle', 'status'] as const;
/** One power action. */
export type PowerAction = (typeof POWER_ACTIONS)[number];

/** One power-serve request. */
export interface PowerRequest {
  /** Positive, unique per driver process; its answer carries it back. */
  id: number;
  /** What to do. */
  action: PowerAction;
  /** Off time of this cycle, instead of the configured one. */
  offTimeMs?: number;
}

/** One power-serve answer; id 0 answers a request whose id could not be read. */
export type PowerAnswer =
  | { id: number; ok: true; state: 'on' | 'off' | 'unknown' }
  | { id: number; ok: false; code: ErrorCode; error: string };

/** Every line a driver job prints, typed. */
export type DriverEvent =
  | { kind: 'step'; step: StepEvent }
  | { kind: 'flash'; progress: FlashProgress }
  | { kind: 'failed'; failure: DriverFailure }
  | { kind: 'power-request'; request: PowerRequest }
  | { kind: 'power-answer'; answer: PowerAnswer }
  | { kind: 'text'; text: string };

// ---- writer -------------------------------------------------------------------------------------

/** The line (newline included) that carries `event`. A text event's own newlines become spaces. */
export function driverEventLine(event: DriverEvent): string {
  switch (event.kind) {
    case 'step':
      return `${JSON.stringify({ step: event.step })}\n`;
    case 'flash':
      return `${JSON.stringify({ flash: event.progress })}\n`;
    case 'failed':
      return `${JSON.stringify({ failed: event.failure })}\n`;
    case 'power-request':
      return `${JSON.stringify(event.request)}\n`;
    case 'power-answer':
      return `${JSON.stringify(event.answer)}\n`;
    case 'text':
      return `${event.text.replace(/\r?\n/g, ' ')}\n`;
  }
}

/** The coded failure of any thrown value: a JigletError keeps its code, anything else is INTERNAL. */
export function failureOf(error: unknown): DriverFailure {
  return {
    code: error instanceof JigletError ? error.code : 'JIGLET_E_INTERNAL',
    message: error instanceof Error ? error.message : String(error),
  };
}

// ---- reader -------------------------------------------------------------------------------------

const errorCode = z.string().transform((code): ErrorCode => (isErrorCode(code) ? code : 'JIGLET_E_INTERNAL'));
const failureSchema = z.object({ code: errorCode, message: z.string() });

const stepSchema = z.object({
  dut: z.string().optional(),
  driver: z.string().optional(),
  action: z.string().min(1),
  target: z.string().optional(),
  args: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  durationMs: z.number().nonnegative(),
  result: z.string().optional(),
  error: failureSchema.optional(),
});

// Counters that are missing, negative or not finite read as 0, so a reader never plots garbage;
// a line is a progress report as long as its phase is one.
const count = z.number().nonnegative().catch(0);
const countOrNull = z
  .union([z.number().transform((n) => Math.max(n, 0)), z.null()])
  .catch(null)
  .default(null);
const progressSchema = z.object({
  phase: z.enum(FLASH_PHASES),
  bytesWritten: count,
  bytesRead: count,
  totalBytes: countOrNull,
  mbPerS: count,
  etaS: countOrNull,
});

const requestSchema = z.object({
  id: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  action: z.enum(POWER_ACTIONS),
  offTimeMs: z.number().nonnegative().optional(),
});

const answerSchema = z.discriminatedUnion('ok', [
  z.object({
    id: z.number().int().nonnegative(),
    ok: z.literal(true),
    state: z.enum(['on', 'off', 'unknown']),
  }),
  z.object({ id: z.number().int().nonnegative(), ok: z.literal(false), code: errorCode, error: z.string() }),
]);

/** Reads one line (without its newline); anything that is not a valid event is a text event. */
export function readDriverLine(line: string): DriverEvent {
  const text: DriverEvent = { kind: 'text', text: line };
  if (!line.startsWith('{')) return text;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return text;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return text;
  const record = value as Record<string, unknown>;
  if ('step' in record) {
    const step = stepSchema.safeParse(record.step);
    return step.success ? { kind: 'step', step: step.data } : text;
  }
  if ('flash' in record) {
    const progress = progressSchema.safeParse(record.flash);
    return progress.success ? { kind: 'flash', progress: progress.data } : text;
  }
  if ('failed' in record) {
    const failure = failureSchema.safeParse(record.failed);
    return failure.success ? { kind: 'failed', failure: failure.data } : text;
  }
  if ('ok' in record) {
    const answer = answerSchema.safeParse(record);
    return answer.success ? { kind: 'power-answer', answer: answer.data } : text;
  }
  if ('action' in record) {
    const request = requestSchema.safeParse(record);
    return request.success ? { kind: 'power-request', request: request.data } : text;
  }
  return text;
}

/** The progress report on one stdout line of a flash job, or undefined for any other line. */
export function parseProgressLine(line: string): FlashProgress | undefined {
  const event = readDriverLine(line);
  return event.kind === 'flash' ? event.progress : undefined;
}

/**
 * Reads a power-serve request line, or says what is wrong with it (with the request's id when
 * it has a usable one, else 0) so the driver can answer instead of ending.
 */
export function parsePowerRequest(line: string): PowerRequest | { id: number; problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return { id: 0, problem: `a request is not JSON: ${(err as Error).message}` };
  }
  const parsed = requestSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const id = requestSchema.shape.id.safeParse((value as { id?: unknown } | null)?.id);
  if (!id.success) return { id: 0, problem: 'a request needs a positive integer "id"' };
  const where = parsed.error.issues[0]?.path[0];
  return {
    id: id.data,
    problem:
      where === 'offTimeMs'
        ? '"offTimeMs" must be a number of milliseconds'
        : `"action" must be one of ${POWER_ACTIONS.join(', ')}`,
  };
}

/** Longest line kept whole; the rest of a longer one is dropped (a driver's lines are short). */
export const MAX_DRIVER_LINE_CHARS = 64 * 1024;

/**
 * Turns one stream of a driver's output (stdout or stderr, in pieces as they arrive) into events.
 * Memory stays bounded: a line longer than MAX_DRIVER_LINE_CHARS becomes one text event of its
 * start, and the rest of it is skipped.
 */
export class DriverEventReader {
  readonly #decoder = new StringDecoder('utf8');
  #partial = '';
  #skipping = false;

  /** The events of the lines `piece` completes. */
  push(piece: Buffer | string): DriverEvent[] {
    const lines = (this.#partial + (typeof piece === 'string' ? piece : this.#decoder.write(piece))).split(
      '\n',
    );
    this.#partial = lines.pop() ?? '';
    const events: DriverEvent[] = [];
    for (const line of lines) {
      if (!this.#skipping) events.push(readDriverLine(line));
      this.#skipping = false;
    }
    if (this.#partial.length > MAX_DRIVER_LINE_CHARS) {
      if (!this.#skipping) events.push({ kind: 'text', text: this.#partial.slice(0, MAX_DRIVER_LINE_CHARS) });
      this.#partial = '';
      this.#skipping = true;
    }
    return events;
  }

  /** The event of a last line that had no newline, if any (the stream ended). */
  end(): DriverEvent[] {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    const skipped = this.#skipping;
    this.#skipping = false;
    return rest === '' || skipped ? [] : [readDriverLine(rest)];
  }
}

/** Every event in a whole text (a finished job's stream). */
export function readDriverText(text: string): DriverEvent[] {
  const reader = new DriverEventReader();
  return [...reader.push(text), ...reader.end()];
}

/** How many of a failed driver's reasons a summary keeps (the last ones), and its longest length. */
const MAX_REASONS = 3;
const MAX_REASON_CHARS = 2000;

/** What a failed driver said on stderr, in short. */
export interface DriverFailureSummary {
  /** Its own error code: from its `failed` line, else from its last failed step. */
  code: ErrorCode | undefined;
  /** Its own words: step errors, its `failed` message and text lines, each once, the last three. */
  reason: string;
}

/** Sums up a failed driver's stderr events (see DriverFailureSummary). */
export function summarizeDriverFailure(events: Iterable<DriverEvent>): DriverFailureSummary {
  const reasons: string[] = [];
  let stepCode: ErrorCode | undefined;
  let failedCode: ErrorCode | undefined;
  const add = (text: string): void => {
    if (text !== '' && !reasons.includes(text)) reasons.push(text);
  };
  for (const event of events) {
    if (event.kind === 'step' && event.step.error) {
      stepCode = event.step.error.code;
      add(event.step.error.message);
    } else if (event.kind === 'failed') {
      failedCode = event.failure.code;
      add(event.failure.message);
    } else if (event.kind === 'text' && event.text.trim() !== '') {
      add(event.text.replace(/^jig-driver: /, ''));
    }
  }
  return {
    code: failedCode ?? stepCode,
    reason: reasons.slice(-MAX_REASONS).join('; ').slice(0, MAX_REASON_CHARS),
  };
}
