/**
 * What the queue's code sends SQL to, whichever engine is behind it: real PostgreSQL
 * (pg-queue-db.ts) or the embedded PGlite (embedded-queue-db.ts); queue-db.ts opens one.
 */

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
  /** Closes the connection(s) to the database. */
  close(): Promise<void>;
}
