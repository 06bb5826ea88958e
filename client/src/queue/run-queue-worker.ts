/**
 * `jiglet queue-worker`: runs queue workers beside one agent until SIGTERM/SIGINT. It lives with
 * the client library because a worker is a client of its agent — it holds leases and heartbeats
 * over mutual-TLS gRPC like any CI pipeline — and `jiglet` only launches it.
 *
 * With `--db pglite:DIR` this process hosts the embedded queue and serves it to `jigctl queue`
 * on DIR's socket (see queue-db.ts).
 */
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { JigletClient } from '../jiglet-client.js';
import { type QueueMetricsServer, serveQueueMetrics } from './queue-metrics.js';
import { QueueStore } from './queue-store.js';
import { DEFAULT_TIMING, QueueWorker, type QueueWorkerTiming } from './queue-worker.js';

export interface QueueWorkerFlags extends ConnectionFlags {
  db: string;
  name?: string;
  heartbeatMs?: number;
  expiryMs?: number;
  leaseTtlMs?: number;
  /** HOST:PORT to serve the queue's depth to Prometheus on (plain HTTP). */
  metrics?: string;
}

/** Starts the worker; resolves once it is claiming, with a function that stops it. */
export async function runQueueWorker(
  flags: QueueWorkerFlags,
  log: (line: string) => void,
): Promise<{ worker: QueueWorker; stop: () => Promise<void>; metricsPort?: number }> {
  const settings = resolveConnection(flags);
  const store = await QueueStore.open(flags.db, { hostEmbedded: true });
  const timing: QueueWorkerTiming = {
    ...DEFAULT_TIMING,
    ...(flags.heartbeatMs !== undefined ? { heartbeatMs: flags.heartbeatMs } : {}),
    ...(flags.expiryMs !== undefined ? { expiryMs: flags.expiryMs } : {}),
    ...(flags.leaseTtlMs !== undefined ? { leaseTtlMs: flags.leaseTtlMs } : {}),
  };
  let worker: QueueWorker;
  let metrics: QueueMetricsServer | undefined;
  try {
    // Bound before the worker claims anything: a port in use is a startup error, not a half-started worker.
    if (flags.metrics) metrics = await serveQueueMetrics(flags.metrics, store, log);
    worker = new QueueWorker({
      store,
      connect: () => new JigletClient(settings),
      agent: settings.server,
      name: flags.name,
      timing,
      log,
    });
  } catch (err) {
    await metrics?.close();
    await store.close();
    throw err;
  }
  worker.start();
  return {
    worker,
    metricsPort: metrics?.port,
    stop: async () => {
      await worker.stop();
      await metrics?.close();
      await store.close();
    },
  };
}
