/**
 * `jig-driver power-serve`: one long-lived power driver per DUT, so a power action costs a request
 * to the hardware and not a Node start (~0.1-0.3 s here). Requests are JSON lines on stdin
 * (`{"id":1,"action":"on"}`, a cycle may carry `"offTimeMs"`), answers are JSON lines on stdout
 * (`{"id":1,"ok":true,"state":"on"}` or `{"id":1,"ok":false,"code":"…","error":"…"}`), and steps
 * go to stderr as JSON lines, as for `jig-driver power`. Requests are served one at a time, in
 * order; the process ends when stdin ends.
 */
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { JigletError } from '../../protocol/src/errors.js';
import type { PowerSwitch } from './power.js';

/** The actions a request may ask for. */
export type PowerServeAction = 'on' | 'off' | 'cycle' | 'status';

/** One request line. */
export interface PowerServeRequest {
  id: number;
  action: PowerServeAction;
  /** Off time of this cycle, instead of the configured one. */
  offTimeMs?: number;
}

/** One answer line. */
export type PowerServeAnswer =
  | { id: number; ok: true; state: 'on' | 'off' | 'unknown' }
  | { id: number; ok: false; code: string; error: string };

const ACTIONS: readonly string[] = ['on', 'off', 'cycle', 'status'];

/** Parses a request line; a line that is not one is answered with an error (id 0 if unknown). */
export function parsePowerRequest(line: string): PowerServeRequest | { id: number; problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return { id: 0, problem: `a request is not JSON: ${(err as Error).message}` };
  }
  const v = (value ?? {}) as Record<string, unknown>;
  const id = typeof v.id === 'number' && Number.isSafeInteger(v.id) && v.id > 0 ? v.id : 0;
  if (id === 0) return { id, problem: 'a request needs a positive integer "id"' };
  if (typeof v.action !== 'string' || !ACTIONS.includes(v.action))
    return { id, problem: `"action" must be one of ${ACTIONS.join(', ')}` };
  const offTimeMs = v.offTimeMs;
  if (offTimeMs !== undefined && (typeof offTimeMs !== 'number' || !(offTimeMs >= 0)))
    return { id, problem: '"offTimeMs" must be a number of milliseconds' };
  return { id, action: v.action as PowerServeAction, ...(offTimeMs === undefined ? {} : { offTimeMs }) };
}

/**
 * Serves requests from `input` until it ends. `switchFor(offTimeMs)` builds (or reuses) the switch,
 * with a cycle's own off time when the request names one.
 */
export async function servePower(opts: {
  input: Readable;
  output: Writable;
  switchFor: (offTimeMs: number | undefined) => PowerSwitch;
}): Promise<void> {
  const answer = (a: PowerServeAnswer): void => {
    opts.output.write(`${JSON.stringify(a)}\n`);
  };
  const lines = createInterface({ input: opts.input, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const request = parsePowerRequest(line);
    if ('problem' in request) {
      answer({ id: request.id, ok: false, code: 'JIGLET_E_INVALID_ARGUMENT', error: request.problem });
      continue;
    }
    try {
      const sw = opts.switchFor(request.action === 'cycle' ? request.offTimeMs : undefined);
      if (request.action === 'status') {
        answer({ id: request.id, ok: true, state: await sw.status() });
      } else {
        await sw[request.action]();
        answer({ id: request.id, ok: true, state: request.action === 'off' ? 'off' : 'on' });
      }
    } catch (err) {
      answer({
        id: request.id,
        ok: false,
        code: err instanceof JigletError ? err.code : 'JIGLET_E_INTERNAL',
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
}
