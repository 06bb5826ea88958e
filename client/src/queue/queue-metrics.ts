/**
 * The fleet queue's depth for Prometheus. The queue lives in the database, not in any agent, so
 * the queue worker beside each agent serves it (`jiglet queue-worker --metrics HOST:PORT`), read
 * from `QueueStore.stats()` at scrape time. Every worker on one database reports the same
 * numbers: aggregate with max(), not sum(). A tiny HTTP server of its own, because client/ must
 * not import the agent's (and the agent must not import client/).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import type { QueueStore } from './queue-store.js';

/** A bound queue metrics listener. */
export interface QueueMetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** `k=v,k=v` with sorted keys: one stable label value per label set. */
export function labelSetName(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/** A registry whose gauges ask `store` at every scrape. */
export function queueMetricsRegistry(store: Pick<QueueStore, 'stats'>): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // One query per scrape serves both gauges, whichever is collected first.
  let pending: ReturnType<QueueStore['stats']> | undefined;
  const stats = (): ReturnType<QueueStore['stats']> => {
    pending ??= store.stats().finally(() => {
      pending = undefined;
    });
    return pending;
  };
  new Gauge({
    name: 'jiglet_queue_jobs',
    help: 'Fleet queue jobs by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const { totals } = await stats();
      for (const [state, n] of Object.entries(totals)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'jiglet_queue_depth',
    help: 'Queued (unclaimed) fleet queue jobs by the label set they ask for',
    labelNames: ['labels'],
    registers: [registry],
    async collect() {
      const { labelSets } = await stats();
      // A label set with nothing queued or running any more disappears instead of staying at its last value.
      this.reset();
      for (const set of labelSets) this.set({ labels: labelSetName(set.labels) }, set.queued);
    },
  });
  return registry;
}

/** Serves `GET /metrics` on `listen` (HOST:PORT; plain HTTP, for in-cluster scraping). */
export async function serveQueueMetrics(
  listen: string,
  store: Pick<QueueStore, 'stats'>,
  log: (line: string) => void,
): Promise<QueueMetricsServer> {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[3]) > 65535) throw invalidArgument(`--metrics: expected HOST:PORT, got "${listen}"`);
  const registry = queueMetricsRegistry(store);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res
        .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end('not found: see GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log(`queue metrics failed: ${err instanceof Error ? err.message : String(err)}`);
        res
          .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
          .end('metrics collection failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new JigletError(
          'JIGLET_E_UNAVAILABLE',
          `cannot listen for metrics on ${listen}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`,
        ),
      ),
    );
    server.listen(Number(m[3]), m[1] ?? m[2], () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
