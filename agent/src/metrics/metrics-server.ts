/**
 * The agent's Prometheus listener: plain HTTP on its own address, `GET /metrics` in the text
 * format and 404 for anything else. Plain HTTP because metrics are scraped from inside the lab
 * network by a Prometheus that holds no client certificate; the gRPC port stays mutual-TLS only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';

/** A bound metrics listener, owned by whoever started it. */
export interface MetricsServer {
  /** The port it listens on (the one chosen, when asked for port 0). */
  readonly port: number;
  /** Stops listening and ends open connections (Prometheus keeps them alive). */
  close(): Promise<void>;
}

/** Splits `HOST:PORT` or `[V6]:PORT`; INVALID_ARGUMENT names the flag. */
export function parseListen(listen: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw invalidArgument(`${what}: expected HOST:PORT, got "${listen}"`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Binds `listen` and serves `registry`; a port in use is a startup error that says so. */
export async function startMetricsServer(
  listen: string,
  registry: Registry,
  log: Logger,
): Promise<MetricsServer> {
  const { host, port } = parseListen(listen, '--metrics');
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end('not found: see GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log.error({ err }, 'metrics collection failed');
        res
          .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
          .end('metrics collection failed\n');
      },
    );
  });
  await listenOn(server, host, port, listen);
  const bound = (server.address() as AddressInfo).port;
  log.info({ listen, port: bound }, 'metrics listening (plain HTTP, GET /metrics)');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listenOn(server: Server, host: string, port: number, listen: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'the port is in use (another jiglet, or another exporter?)'
          : err.code === 'EADDRNOTAVAIL'
            ? 'no such address on this host'
            : err.message;
      reject(new JigletError('JIGLET_E_UNAVAILABLE', `cannot listen for metrics on ${listen}: ${why}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
