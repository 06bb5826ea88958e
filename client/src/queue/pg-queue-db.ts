/**
 * The `pg` side of the queue database: a pool on a real PostgreSQL, or a short-lived socket client
 * of the embedded engine (jigctl talking to the worker that hosts it), and the LISTEN connection.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { JigletError } from '../../../protocol/src/errors.js';
import { isConnectionError } from './connection-errors.js';
import { EMBEDDED_PORT, EMBEDDED_SOCKET } from './embedded-queue-db.js';
import type { Queryable, QueueDb } from './queryable.js';

const CONNECT_TIMEOUT_MS = 5000;
/** A runaway statement must not hold row locks that every other worker waits on. */
const STATEMENT_TIMEOUT_MS = 10_000;
/** A worker stuck between BEGIN and COMMIT releases its locks after this. */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000;
/** A socket client holds the embedded engine alone while connected, so it lets go quickly. */
const EMBEDDED_CLIENT_IDLE_MS = 50;
const LISTEN_RETRY_MIN_MS = 250;
const LISTEN_RETRY_MAX_MS = 5000;

export function postgresConfig(url: string, poolSize: number): pg.PoolConfig {
  return {
    connectionString: url,
    max: poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
    application_name: 'jiglet-queue',
  };
}

export async function openEmbeddedClient(dir: string, onError: (err: Error) => void): Promise<QueueDb> {
  const unavailable = (cause?: unknown) =>
    new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `no jiglet queue-worker is serving the embedded queue in ${dir}; ` +
        `start one with \`jiglet queue-worker --db pglite:${dir}\``,
      { cause },
    );
  if (!existsSync(join(dir, EMBEDDED_SOCKET))) throw unavailable();
  // No session settings (statement_timeout…): the embedded engine has one session, shared with the host.
  const db = new PgQueueDb(
    'pglite',
    {
      host: dir,
      port: EMBEDDED_PORT,
      user: 'postgres',
      database: 'postgres',
      max: 1,
      idleTimeoutMillis: EMBEDDED_CLIENT_IDLE_MS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      allowExitOnIdle: true,
    },
    onError,
    false,
  );
  try {
    await db.query('SELECT 1');
  } catch (err) {
    await db.close();
    // A socket file left by a worker that died is as good as none.
    throw isConnectionError(err) ? unavailable(err) : err;
  }
  return db;
}

/** A `pg` pool: a real PostgreSQL, or a socket client of the embedded engine. */
export class PgQueueDb implements QueueDb {
  readonly #pool: pg.Pool;
  readonly #listeners = new Set<PgListener>();
  #closed = false;

  constructor(
    readonly engine: 'postgres' | 'pglite',
    private readonly config: pg.PoolConfig,
    private readonly onError: (err: Error) => void,
    private readonly canListen = true,
  ) {
    this.#pool = new pg.Pool(config);
    // An idle client whose server went away emits 'error' here; unhandled, it would end the process.
    // pool.end() resolves before its sockets close: a server stopping right after is no news.
    this.#pool.on('error', (err) => {
      if (!this.#closed) onError(err);
    });
  }

  async query<R extends object>(sql: string, params?: unknown[]): Promise<R[]> {
    return (await this.#pool.query(sql, params)).rows as R[];
  }

  async exec(sql: string): Promise<void> {
    await this.#pool.query(sql);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    // A checked-out client has no pool listener: a connection dying between statements lands here.
    const onClientError = (err: Error) => {
      broken = err;
      this.onError(err);
    };
    client.on('error', onClientError);
    try {
      await client.query('BEGIN');
      const result = await fn(clientQueryable(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (!broken && isConnectionError(err)) broken = err as Error;
      if (!broken) await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr));
      throw err;
    } finally {
      client.removeListener('error', onClientError);
      client.release(broken);
    }
  }

  async listen(channel: string, onPayload: (payload: string) => void) {
    if (!this.canListen) return undefined;
    const listener = new PgListener(this.config, channel, onPayload, this.onError);
    await listener.start();
    this.#listeners.add(listener);
    return async () => {
      this.#listeners.delete(listener);
      await listener.stop();
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#listeners].map((l) => l.stop()));
    this.#listeners.clear();
    await this.#pool.end();
  }
}

function clientQueryable(client: pg.PoolClient): Queryable {
  return {
    query: async <R extends object>(sql: string, params?: unknown[]) =>
      (await client.query(sql, params)).rows as R[],
    exec: async (sql: string) => {
      await client.query(sql);
    },
  };
}

/** One LISTEN connection outside the pool; it comes back by itself after the server restarts. */
class PgListener {
  #client: pg.Client | undefined;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = LISTEN_RETRY_MIN_MS;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly channel: string,
    private readonly onPayload: (payload: string) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client(this.config);
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client));
    client.on('notification', (msg) => {
      if (msg.channel === this.channel) this.onPayload(msg.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(this.channel)}`);
    } catch (err) {
      await client.end().catch(() => undefined); // already failing; the first error is the one to report
      throw err;
    }
    if (this.#stopped) {
      await client.end();
      return;
    }
    this.#client = client;
    this.#retryMs = LISTEN_RETRY_MIN_MS;
  }

  #lost(client: pg.Client, err?: Error): void {
    if (client !== this.#client || this.#stopped) return;
    this.#client = undefined;
    this.onError(err ?? new Error(`Connection terminated (LISTEN ${this.channel})`));
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    this.#retry = setTimeout(() => {
      this.start().catch((err: Error) => {
        this.onError(err);
        this.#retryMs = Math.min(this.#retryMs * 2, LISTEN_RETRY_MAX_MS);
        if (!this.#stopped) this.#scheduleRetry();
      });
    }, this.#retryMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end();
  }
}
