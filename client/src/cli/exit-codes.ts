/**
 * How jigctl reports failure: one line on stderr and an exit code scripts can branch on
 * (sysexits-style for the agent's own refusals, the job's own code for `run`).
 */
import { type ErrorCode, JigletError } from '../../../protocol/src/errors.js';
import type { Diagnosis } from '../diagnose-connection.js';

/** Exit codes of jigctl itself. */
export const EXIT = {
  failure: 1,
  usage: 2,
  unavailable: 69,
  denied: 77,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  JIGLET_E_INVALID_ARGUMENT: EXIT.usage,
  JIGLET_E_OUT_OF_RANGE: EXIT.usage,
  JIGLET_E_UNAVAILABLE: EXIT.unavailable,
  JIGLET_E_DEADLINE_EXCEEDED: EXIT.unavailable,
  JIGLET_E_UNAUTHENTICATED: EXIT.denied,
  JIGLET_E_PERMISSION_DENIED: EXIT.denied,
};

/**
 * A refused TLS handshake reaches grpc-js clients as UNAVAILABLE ("No connection established"),
 * but to a person it is a credentials problem, not a network one.
 */
const TLS_REFUSAL = /certificate|handshake|alert|unknown ca|self.signed|ssl/i;

/** The exit code and one-line message for an error; `diagnose` explains an unreachable agent. */
export async function describeFailure(
  err: unknown,
  diagnose?: () => Promise<Diagnosis>,
): Promise<{ code: number; message: string }> {
  if (err instanceof JigletError) {
    if (err.code === 'JIGLET_E_UNAVAILABLE' && TLS_REFUSAL.test(err.message)) {
      return {
        code: EXIT.denied,
        message: `the TLS handshake with the agent failed: ${oneLine(err.message)}`,
      };
    }
    if (err.code === 'JIGLET_E_UNAVAILABLE') {
      const found = diagnose ? await diagnose().catch(() => null) : null;
      if (found?.kind === 'tls-refused') {
        return { code: EXIT.denied, message: `the agent refused our TLS identity: ${oneLine(found.detail)}` };
      }
      return { code: EXIT.unavailable, message: `cannot reach the agent: ${oneLine(err.message)}` };
    }
    return { code: BY_CODE[err.code] ?? EXIT.failure, message: oneLine(err.message) };
  }
  return { code: EXIT.failure, message: oneLine(err instanceof Error ? err.message : String(err)) };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}
