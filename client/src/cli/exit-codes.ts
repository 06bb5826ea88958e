/**
 * How jigctl reports failure: one line on stderr and an exit code scripts can branch on
 * (sysexits-style for the agent's own refusals, the job's own code for `run`).
 */
import { type ErrorCode, JigletError } from '../../../protocol/src/errors.js';
import { type Diagnosis, networkErrorText } from '../diagnose-connection.js';

/**
 * Exit codes of jigctl itself. One rule for every command: 2 when the request was wrong (a bad
 * flag or value, a DUT, job, lease or queue job that does not exist), whether jigctl or the agent
 * spotted it; 1 when the request was fine and what it asked for failed (a pattern never came, a
 * health check failed, a driver failed).
 */
export const EXIT = {
  failure: 1,
  usage: 2,
  unavailable: 69,
  denied: 77,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  JIGLET_E_INVALID_ARGUMENT: EXIT.usage,
  JIGLET_E_OUT_OF_RANGE: EXIT.usage,
  JIGLET_E_NOT_FOUND: EXIT.usage,
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
    if (err.code === 'JIGLET_E_UNAVAILABLE' && fromGrpc(err)) {
      const found = diagnose ? await diagnose().catch(() => null) : null;
      if (found?.kind === 'tls-refused') {
        return { code: EXIT.denied, message: `the agent refused our TLS identity: ${oneLine(found.detail)}` };
      }
      if (found?.kind === 'unreachable') {
        return {
          code: EXIT.unavailable,
          message: `cannot reach the agent at ${found.server}: ${found.detail}; ${CHECK_AGENT}`,
        };
      }
      return {
        code: EXIT.unavailable,
        message: `cannot reach the agent: ${grpcUnavailableText(err.message)}`,
      };
    }
    return { code: BY_CODE[err.code] ?? EXIT.failure, message: oneLine(inFlagTerms(err)) };
  }
  return { code: EXIT.failure, message: oneLine(err instanceof Error ? err.message : String(err)) };
}

/**
 * The agent states a range for any client ("the lease TTL must be between 1s and 24h; got 0s");
 * on the command line the user typed a flag, so the message names it.
 */
const FLAGS: Readonly<Record<string, string>> = {
  'the lease TTL': '--ttl',
  'the claim wait': '--wait',
  'the job timeout': '--timeout',
  'the expect timeout': '--timeout',
  'the stop grace period': '--grace',
  'the power-off time': '--off-time',
  'the memory limit': '--memory',
  'the CPU limit': '--cpus',
  'the process limit': '--pids',
  'the working directory': '--cwd',
};

function inFlagTerms(err: JigletError): string {
  if (err.code !== 'JIGLET_E_INVALID_ARGUMENT') return err.message;
  const m = /^(the [\w -]+?) (must be .*); got (.*)$/.exec(err.message);
  const flag = m && FLAGS[m[1]!];
  return flag ? `${flag} ${m[2]} (got ${m[3]})` : err.message;
}

/** What to check when the agent cannot be reached. */
const CHECK_AGENT = 'check that `jiglet serve` runs there and that --server (or JIGLET_ADDR) names it';

/** True for an error a gRPC call raised (its cause is the grpc-js status), not one of our own. */
function fromGrpc(err: JigletError): boolean {
  const cause = err.cause as { code?: unknown; details?: unknown } | undefined;
  return typeof cause?.code === 'number' && typeof cause.details === 'string';
}

/**
 * grpc-js's UNAVAILABLE text in one clause: "No connection established. Last error: Error: connect
 * ECONNREFUSED 127.0.0.1:1. Resolution note: " becomes "nothing accepts connections there …".
 */
function grpcUnavailableText(message: string): string {
  const errno = /\b(E[A-Z]{4,})\b/.exec(message)?.[1];
  const words = networkErrorText(errno);
  if (words) return `${words}; ${CHECK_AGENT}`;
  const cleaned = message.replace(/\.?\s*Resolution note:.*$/s, '').replace(/Last error: Error: /, '');
  return oneLine(cleaned);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}
