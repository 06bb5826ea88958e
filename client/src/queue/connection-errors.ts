/** Which database errors are the connection's (back off and retry) rather than the statement's. */
import { JigletError } from '../../../protocol/src/errors.js';

/**
 * True for failures of the connection rather than of the statement: the server is down,
 * restarting or unreachable. Callers back off and retry these; the pool reconnects by itself.
 */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof JigletError) return err.code === 'JIGLET_E_UNAVAILABLE';
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECTION_ERRNOS.has(code) || SERVER_GONE_CODES.has(code) || code.startsWith('08')) return true;
  }
  if (CONNECTION_MESSAGES.test(err.message)) return true;
  if (err instanceof AggregateError && err.errors.some(isConnectionError)) return true;
  return err.cause !== undefined && isConnectionError(err.cause);
}

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT', // a unix socket that is not there (yet)
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);
/** admin_shutdown, crash_shutdown, cannot_connect_now (starting up or shutting down). */
const SERVER_GONE_CODES = new Set(['57P01', '57P02', '57P03']);
const CONNECTION_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|encountered a connection error|Client was closed and is not queryable/i;

export function reportToStderr(err: Error): void {
  process.stderr.write(`jiglet: queue database connection lost: ${err.message}\n`);
}
