/**
 * `jig-driver power-serve`: one long-lived power driver per DUT, so a power action costs a request
 * to the hardware and not a Node start (~0.1-0.3 s here). Requests are JSON lines on stdin, one
 * answer line each on stdout, steps on stderr as for `jig-driver power` (the line formats are
 * protocol's driver-events.ts). Requests are served one at a time, in order; the process ends
 * when stdin ends.
 */
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import {
  driverEventLine,
  failureOf,
  type PowerAnswer,
  parsePowerRequest,
} from '../../protocol/src/driver-events.js';
import type { PowerSwitch } from './power.js';

/**
 * Serves requests from `input` until it ends. `switchFor(offTimeMs)` builds (or reuses) the switch,
 * with a cycle's own off time when the request names one.
 */
export async function servePower(opts: {
  input: Readable;
  output: Writable;
  switchFor: (offTimeMs: number | undefined) => PowerSwitch;
}): Promise<void> {
  const answer = (a: PowerAnswer): void => {
    opts.output.write(driverEventLine({ kind: 'power-answer', answer: a }));
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
      const { code, message } = failureOf(err);
      answer({ id: request.id, ok: false, code, error: message });
    }
  }
}
