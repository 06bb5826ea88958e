/**
 * The embedded engine: PGlite inside the process that hosts the queue (the queue worker), served
 * to other processes on a unix socket in its directory through a gate that gives each client the
 * single PGlite session for as long as it is connected.
 */
import { existsSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { Queryable, QueueDb } from './queryable.js';

export const EMBEDDED_PORT = 5432;
/** The name libpq and `pg` derive from `host: DIR, port: 5432`. */
export const EMBEDDED_SOCKET = `.s.PGSQL.${EMBEDDED_PORT}`;
/** PGLiteSocketServer's own socket; only our gatekeeper (see serveEmbedded) connects to it. */
const EMBEDDED_INNER_SOCKET = '.jiglet-pglite.sock';
const HANDLER_GONE_TIMEOUT_MS = 5000;
/** A client left idle (psql open in a terminal) would stall the host's queue worker: cut it off. */
const EMBEDDED_IDLE_CUTOFF_MS = 5000;

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
export class PgliteQueueDb implements QueueDb {
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
