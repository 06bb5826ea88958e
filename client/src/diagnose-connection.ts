/**
 * Why a connection failed. grpc-js reports a refused client certificate and a closed port alike
 * ("No connection established"); a direct TLS handshake with the same material tells them apart,
 * so a user is told to fix a certificate rather than a network.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { type ConnectionSettings, isLocalAddress } from './connection.js';

/** How long the probe waits for the agent's verdict on our certificate. */
const PROBE_TIMEOUT_MS = 3000;

/** What the probe found: the agent is unreachable, refused our TLS identity, or accepted it. */
export type Diagnosis =
  | { kind: 'unreachable'; detail: string; server: string }
  | { kind: 'tls-refused'; detail: string }
  | { kind: 'ok' };

/** Network errors in words: what a person sees when the address is wrong or the agent is down. */
const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'nothing accepts connections there (connection refused)',
  EHOSTUNREACH: 'no route to that host',
  ENETUNREACH: 'no route to that network',
  ETIMEDOUT: 'the connection timed out',
  ENOTFOUND: 'that host name does not resolve',
  ENOENT: 'no such socket (is the agent running, and is this inside one of its jobs?)',
  EACCES: 'the socket may not be opened by this user',
  EAI_AGAIN: 'that host name does not resolve (DNS lookup failed)',
};

/** A network error code in words ("connection refused"), or undefined for other codes. */
export function networkErrorText(code: string | undefined): string | undefined {
  return code === undefined ? undefined : NETWORK_ERRORS[code];
}

/** Opens one TLS 1.3 connection like the client does and reports how it ends. */
export function diagnoseConnection(settings: ConnectionSettings): Promise<Diagnosis> {
  if (isLocalAddress(settings.server)) return diagnoseLocal(settings.server);
  const [, host = settings.server, port = '443'] = /^\[?(.*?)\]?:(\d+)$/.exec(settings.server) ?? [];
  return new Promise((resolve) => {
    let done = false;
    const finish = (d: Diagnosis): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(d);
    };
    const socket = tls.connect({
      host,
      port: Number(port),
      ca: readFileSync(settings.ca),
      cert: readFileSync(settings.cert),
      key: readFileSync(settings.key),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
      servername: /^[\d.:]+$/.test(host) ? undefined : host,
    });
    // In TLS 1.3 the server judges our certificate after the client's handshake is done, so
    // its refusal arrives as an alert (an 'error') shortly after 'secureConnect'.
    const timer = setTimeout(() => finish({ kind: 'ok' }), PROBE_TIMEOUT_MS);
    socket.once('secureConnect', () => socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
    socket.once('data', () => finish({ kind: 'ok' }));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const text = networkErrorText(err.code);
      if (text) finish({ kind: 'unreachable', detail: text, server: settings.server });
      else finish({ kind: 'tls-refused', detail: err.message });
    });
    socket.once('close', () =>
      finish({ kind: 'tls-refused', detail: 'the agent closed the connection during the TLS handshake' }),
    );
  });
}

/** The local endpoint has no TLS: only whether its socket accepts a connection. */
function diagnoseLocal(server: string): Promise<Diagnosis> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: server.slice('unix:'.length) });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ kind: 'ok' });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve({ kind: 'unreachable', detail: networkErrorText(err.code) ?? err.message, server });
    });
  });
}
