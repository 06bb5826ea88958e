/**
 * The fleet queue's database connection, over one of two engines: a real PostgreSQL (a `pg`
 * pool, for fleets) or the embedded PGlite (one host). PGlite runs inside the one process that
 * hosts the queue (the queue worker), which also serves it to other processes (jigctl) on a unix
 * socket in its directory. Callers see the same small interface either way.
 */
import { resolve } from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { reportToStderr } from './connection-errors.js';
import { PgliteQueueDb } from './embedded-queue-db.js';
import { openEmbeddedClient, PgQueueDb, postgresConfig } from './pg-queue-db.js';
import type { QueueDb } from './queryable.js';

export { isConnectionError } from './connection-errors.js';
export type { Queryable, QueueDb } from './queryable.js';

const DEFAULT_POOL_SIZE = 10;

/** How to open the queue database. */
export interface QueueDbOptions {
  /** For `pglite:DIR`: open the engine in this process and serve it to others on DIR's socket. */
  hostEmbedded?: boolean;
  /** Connections to a real PostgreSQL (default 10). */
  poolSize?: number;
  /** Told about connection failures no caller is waiting on (an idle connection lost to a restart). */
  onConnectionError?: (err: Error) => void;
}

/** Opens `postgres://…`, `postgresql://…`, `pglite:DIR` or `pglite:memory` (tests only). */
export async function openQueueDb(url: string, opts: QueueDbOptions = {}): Promise<QueueDb> {
  const onError = opts.onConnectionError ?? reportToStderr;
  if (/^postgres(ql)?:\/\//.test(url)) {
    return new PgQueueDb('postgres', postgresConfig(url, opts.poolSize ?? DEFAULT_POOL_SIZE), onError);
  }
  if (url.startsWith('pglite:') && url.length > 'pglite:'.length) {
    const where = url.slice('pglite:'.length);
    if (where === 'memory') return PgliteQueueDb.open(undefined);
    const dir = resolve(where);
    return opts.hostEmbedded ? PgliteQueueDb.open(dir) : openEmbeddedClient(dir, onError);
  }
  throw invalidArgument(
    `unsupported queue database "${redact(url)}": use postgres://…, pglite:DIR or pglite:memory`,
  );
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
}
