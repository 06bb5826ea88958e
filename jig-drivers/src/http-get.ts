/**
 * A minimal HTTP GET for network power switches: one request, no connection pooling (a pooled
 * keep-alive socket to a relay board outlives the job that used it), a hard deadline and a capped body.
 */
import http from 'node:http';
import https from 'node:https';
import { JigletError } from '../../protocol/src/errors.js';
import { trimOutput, withDeadline } from './deadline.js';

/** Largest answer body kept; power switches answer with a few hundred bytes. */
const MAX_BODY_BYTES = 64 * 1024;

/** What a device answered. */
export interface HttpAnswer {
  /** HTTP status code. */
  status: number;
  /** The body as text (at most 64 KiB). */
  body: string;
}

/** Options of one request. */
export interface HttpGetOptions {
  /** Deadline for the whole request, connect to last byte. */
  timeoutMs: number;
  /** Who is asking, for error messages (e.g. `tasmota power switch`). */
  what: string;
  /** Extra request headers (e.g. basic auth). */
  headers?: Record<string, string>;
}

/** The URL with secrets (password query parameters, user info) masked, for messages and logs. */
export function redactUrl(url: URL): string {
  const copy = new URL(url);
  if (copy.password) copy.password = '***';
  return copy.href.replace(/([?&]password=)[^&]*/gi, '$1***');
}

/** Unreachable or misbehaving device: the request itself failed or was answered with an error. */
function deviceError(message: string): JigletError {
  return new JigletError('JIGLET_E_UNAVAILABLE', message);
}

/** GETs `url`; rejects on network errors and on the deadline, resolves with any HTTP status. */
export function httpGet(url: URL, options: HttpGetOptions): Promise<HttpAnswer> {
  const label = `${options.what} GET ${redactUrl(url)}`;
  const client = url.protocol === 'https:' ? https : http;
  return withDeadline(
    options.timeoutMs,
    label,
    (signal) =>
      new Promise<HttpAnswer>((resolve, reject) => {
        const request = client.get(url, { agent: false, signal, headers: options.headers }, (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            if (size < MAX_BODY_BYTES) chunks.push(chunk);
            size += chunk.length;
          });
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          response.on('error', (error) =>
            reject(signal.aborted ? signal.reason : deviceError(`${label}: ${error.message}`)),
          );
          // A device that drops the connection mid-body gives 'close' without 'end' (no 'error' on every Node).
          response.on('close', () => {
            if (!response.complete)
              reject(signal.aborted ? signal.reason : deviceError(`${label}: connection closed mid-answer`));
          });
        });
        request.on('error', (error) =>
          reject(signal.aborted ? signal.reason : deviceError(`${label}: ${error.message}`)),
        );
      }),
  );
}

/** GETs `url` and parses a JSON answer; a non-2xx status or a non-JSON body is an error quoting the body. */
export async function httpGetJson(url: URL, options: HttpGetOptions): Promise<unknown> {
  const answer = await httpGet(url, options);
  const label = `${options.what} GET ${redactUrl(url)}`;
  if (answer.status < 200 || answer.status > 299) {
    throw deviceError(`${label}: HTTP ${answer.status}: ${trimOutput(answer.body) || '(empty body)'}`);
  }
  try {
    return JSON.parse(answer.body) as unknown;
  } catch {
    // The parse error itself says nothing useful; what the device sent does.
    throw deviceError(
      `${label}: expected a JSON answer, got ${JSON.stringify(trimOutput(answer.body, 200))}`,
    );
  }
}

/** Resolves `path` against a configured base URL, keeping any path prefix the base carries. */
export function endpoint(base: string, path: string): URL {
  const url = new URL(base);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return new URL(path.replace(/^\//, ''), url);
}
