/**
 * The fleet queue's database connection, over one of two engines: a real PostgreSQL (a `pg`
 * pool, for fleets) or the embedded PGlite (one host). PGlite runs inside the one process that
 * hosts the queue (the queue worker), which also serves it to other processes (jigctl) on a unix
 * socket in its directory. Callers see the same small interface either way.
 */
import { existsSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { failedPrecondition, invalidArgument, JigletError } from '../../../protocol/src/errors.js';

const DEFAULT_POOL_SIZE = 10;
const CONNECT_TIMEOUT_MS = 5000;
/** A runaway statement must not hold row locks that every other worker waits on. */
const STATEMENT_TIMEOUT_MS = 10_000;
/** A worker stuck between BEGIN and COMMIT releases its locks after this. */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000;
/** A socket client holds the embedded engine alone while connected, so it lets go quickly. */
const EMBEDDED_CLIENT_IDLE_MS = 50;
const EMBEDDED_PORT = 5432;
/** The name libpq and `pg` derive from `host: DIR, port: 5432`. */
const EMBEDDED_SOCKET = `.s.PGSQL.${EMBEDDED_PORT}`;
/** PGLiteSocketServer's own socket; only our gatekeeper (see serveEmbedded) connects to it. */
const EMBEDDED_INNER_SOCKET = '.jiglet-pglite.sock';
const HANDLER_GONE_TIMEOUT_MS = 5000;
/** A client left idle (psql open in a terminal) would stall the host's queue worker: cut it off. */
const EMBEDDED_IDLE_CUTOFF_MS = 5000;
const LISTEN_RETRY_MIN_MS = 250;
const LISTEN_RETRY_MAX_MS = 5000;

/** Something SQL can be sent to: the database, or one transaction. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** The queue's database, whichever engine is behind it. */
export interface QueueDb extends Queryable {
  readonly engine: 'postgres' | 'pglite';
  /** Runs fn in one transaction (BEGIN … COMMIT, ROLLBACK on throw) on one connection. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel; returns an unlisten function. Real PostgreSQL and in-process PGlite only;
   * a pg-socket client to the embedded engine returns undefined (no long-held connection allowed
   * there). Notifications are a wake-up hint: one sent while a listener reconnects is lost.
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<(() => Promise<void>) | undefined>;
  close(): Promise<void>;
}

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

function reportToStderr(err: Error): void {
  process.stderr.write(`jiglet: queue database connection lost: ${err.message}\n`);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
}

function postgresConfig(url: string, poolSize: number): pg.PoolConfig {
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

async function openEmbeddedClient(dir: string, onError: (err: Error) => void): Promise<QueueDb> {
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
class PgQueueDb implements QueueDb {
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

/**
 * One holder at a time, in arrival order: the host's own statements, or one socket client for as
 * long as it is connected. PGlite has a single session, so anything else would interleave one
 * client's statements (or its half-sent Parse/Bind/Execute) with another's.
 */
class Turnstile {
  #tail: Promise<void> = Promise.resolve();

  async acquire(): Promise<() => void> {
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => released);
    await previous;
    return release;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** PGlite in this process, optionally served to other processes on DIR's unix socket. */
class PgliteQueueDb implements QueueDb {
  readonly engine = 'pglite';
  readonly #turn = new Turnstile();
  /** Listeners by channel, for notifications raised by socket clients (see NotificationTap). */
  readonly #listeners = new Map<string, Set<(payload: string) => void>>();
  #stopServing: (() => Promise<void>) | undefined;

  private constructor(private readonly db: PGlite) {}

  /** In memory when `dir` is undefined; otherwise on disk in `dir`, served on its socket. */
  static async open(dir: string | undefined): Promise<PgliteQueueDb> {
    if (dir) {
      await mkdir(dir, { recursive: true });
      await refuseLiveHost(dir);
    }
    const self = new PgliteQueueDb(await PGlite.create(dir));
    if (dir) {
      try {
        self.#stopServing = await serveEmbedded(self.db, dir, self.#turn, (channel, payload) => {
          for (const listener of self.#listeners.get(channel) ?? []) listener(payload);
        });
      } catch (err) {
        await self.db.close();
        throw err;
      }
    }
    return self;
  }

  query<R extends object>(sql: string, params?: unknown[]): Promise<R[]> {
    return this.#turn.run(async () => (await this.db.query<R>(sql, params)).rows);
  }

  exec(sql: string): Promise<void> {
    return this.#turn.run(async () => void (await this.db.exec(sql)));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.#turn.run(() =>
      this.db.transaction((tx) =>
        fn({
          query: async <R extends object>(sql: string, params?: unknown[]) =>
            (await tx.query<R>(sql, params)).rows,
          exec: async (sql: string) => void (await tx.exec(sql)),
        }),
      ),
    );
  }

  async listen(channel: string, onPayload: (payload: string) => void) {
    const unlisten = await this.#turn.run(() => this.db.listen(channel, onPayload));
    const listeners = this.#listeners.get(channel) ?? new Set();
    this.#listeners.set(channel, listeners.add(onPayload));
    return async () => {
      listeners.delete(onPayload);
      await this.#turn.run(() => unlisten());
    };
  }

  async close(): Promise<void> {
    await this.#stopServing?.();
    this.#stopServing = undefined;
    if (!this.db.closed) await this.#turn.run(() => this.db.close());
  }
}

/** Refuses to open DIR a second time: two PGlite instances on one directory corrupt it. */
async function refuseLiveHost(dir: string): Promise<void> {
  const path = join(dir, EMBEDDED_SOCKET);
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((done) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
    probe.once('error', () => done(false));
  });
  if (live)
    throw failedPrecondition(`another jiglet queue-worker already serves the embedded queue in ${dir}`);
}

/**
 * Serves `db` on DIR/.s.PGSQL.5432. PGLiteSocketServer (0.2.x) takes PGlite's lock per protocol
 * message, not per connection, so a gatekeeper in front of it makes each client hold the
 * turnstile from connect to disconnect, and hands it back only once PGlite has let go of that
 * client (its handler detached and any transaction it left open rolled back).
 */
async function serveEmbedded(
  db: PGlite,
  dir: string,
  turn: Turnstile,
  onNotification: (channel: string, payload: string) => void,
): Promise<() => Promise<void>> {
  const front = join(dir, EMBEDDED_SOCKET);
  const inner = join(dir, EMBEDDED_INNER_SOCKET);
  await Promise.all([unlink(front).catch(ignoreMissing), unlink(inner).catch(ignoreMissing)]);
  const pglite = new PGLiteSocketServer({
    db,
    path: inner,
    maxConnections: 1,
    idleTimeout: EMBEDDED_IDLE_CUTOFF_MS,
  });
  await pglite.start();
  const clients = new Set<Socket>();
  const gate = createServer((client) => {
    clients.add(client);
    client.once('close', () => clients.delete(client));
    const tap = new NotificationTap(onNotification);
    void relay(client, inner, turn, tap, () => pgliteLetGo(db, pglite));
  });
  try {
    await listenOn(gate, front);
  } catch (err) {
    await pglite.stop();
    throw err;
  }
  return async () => {
    const closed = new Promise<void>((r) => gate.close(() => r()));
    for (const client of clients) client.destroy();
    await closed;
    await pglite.stop();
    await Promise.all([unlink(front).catch(ignoreMissing), unlink(inner).catch(ignoreMissing)]);
  };
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

function listenOn(server: Server, path: string): Promise<void> {
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(path, () => {
      server.removeListener('error', fail);
      done();
    });
  });
}

/** Pipes one client to PGlite's socket while it holds the turnstile. */
async function relay(
  client: Socket,
  innerPath: string,
  turn: Turnstile,
  tap: NotificationTap,
  letGo: () => Promise<void>,
) {
  client.pause();
  client.on('error', () => client.destroy()); // a client that vanishes is just a closed connection
  const release = await turn.acquire();
  try {
    if (client.destroyed) return;
    await new Promise<void>((done) => {
      const inner = connect(innerPath);
      const end = () => {
        client.destroy();
        inner.destroy();
      };
      inner.on('error', end);
      client.on('close', end);
      inner.on('close', () => {
        end();
        done();
      });
      inner.on('data', (chunk: Buffer) => tap.feed(chunk));
      client.pipe(inner).pipe(client);
      client.resume();
    });
    await letGo();
  } finally {
    release();
  }
}

/** Resolves once PGlite holds nothing for the last socket client. */
async function pgliteLetGo(db: PGlite, server: PGLiteSocketServer): Promise<void> {
  const deadline = Date.now() + HANDLER_GONE_TIMEOUT_MS;
  // The server forgets the handler a turn after the socket closes; there is no event for it.
  while (server.getStats().activeConnections > 0 && Date.now() < deadline) await nextTurn();
  // Queued behind whatever the handler still runs (its own ROLLBACK), so afterwards it is done.
  await db.exec('SELECT 1');
  // A client that died mid-transaction, where the handler missed it: nobody else will end it.
  if (db.isInTransaction()) await db.exec('ROLLBACK');
}

/**
 * Picks NotificationResponse messages out of the byte stream PGlite sends one socket client.
 * PGlite has one session, so a NOTIFY a client raises (a job submitted by jigctl) goes back on
 * that client's socket and never reaches the host's in-process listeners, which are the ones
 * waiting for it (the queue worker). Other messages are skipped without being buffered.
 */
class NotificationTap {
  #pending: Buffer = Buffer.alloc(0);
  #skip = 0;
  #started = false;

  constructor(private readonly deliver: (channel: string, payload: string) => void) {}

  feed(chunk: Buffer): void {
    const skipped = Math.min(this.#skip, chunk.length);
    this.#skip -= skipped;
    const rest = chunk.subarray(skipped);
    let buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, rest]) : rest;
    if (!this.#started) {
      if (buf.length < 2) {
        this.#pending = buf;
        return;
      }
      // The one-byte answer to an SSLRequest ('N', then 'R…'), not a NoticeResponse ('N', 0, …).
      if (buf[0] === 0x4e && buf[1] !== 0) buf = buf.subarray(1);
      this.#started = true;
    }
    while (buf.length >= 5) {
      const total = 1 + buf.readUInt32BE(1);
      if (buf[0] !== NOTIFICATION_RESPONSE) {
        if (buf.length < total) {
          this.#skip = total - buf.length;
          buf = buf.subarray(buf.length);
          break;
        }
      } else if (buf.length < total) {
        break;
      } else {
        this.#notification(buf.subarray(5, total));
      }
      buf = buf.subarray(total);
    }
    this.#pending = Buffer.from(buf);
  }

  /** Body: the notifying backend's pid (int32), then channel and payload as C strings. */
  #notification(body: Buffer): void {
    const channelEnd = body.indexOf(0, 4);
    const payloadEnd = body.indexOf(0, channelEnd + 1);
    this.deliver(body.toString('utf8', 4, channelEnd), body.toString('utf8', channelEnd + 1, payloadEnd));
  }
}

const NOTIFICATION_RESPONSE = 0x41; // 'A'
