/**
 * A real HTTP server on 127.0.0.1, port 0, standing in for a network power switch. Tests give it
 * the answers the device's documented API gives (or garbage, or nothing at all).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake answers one request: status, body (a string is sent as-is, anything else as JSON). */
export type Answer = { status?: number; body: unknown } | 'hang';

/** A running fake device. */
export interface HttpDevice {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Raw request targets received, in order (e.g. `/cm?cmnd=Power%20On`). */
  requests: string[];
  /** Stops the server, dropping any connection left hanging. */
  close(): Promise<void>;
}

/** Starts a fake device that answers each request with `handler(url)`. */
export async function startHttpDevice(handler: (url: URL) => Answer): Promise<HttpDevice> {
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(request.url ?? '');
    const answer = handler(new URL(request.url ?? '/', 'http://device'));
    if (answer === 'hang') return; // never answer: the client's deadline must end this
    const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    response.writeHead(answer.status ?? 200, {
      'content-type': typeof answer.body === 'string' ? 'text/html' : 'application/json',
    });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
