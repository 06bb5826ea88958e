/**
 * Browser sessions of the web console: what a traded ticket becomes. A session is bound to the
 * ticket's identity, role and DUT, lives in an HttpOnly cookie named for its DUT (so consoles of
 * two DUTs can be open side by side), and ends after SESSION_TTL_MS or when the agent stops:
 * sessions are kept in memory only, under the SHA-256 of their secret.
 */
import { randomBytes } from 'node:crypto';
import type { Identity } from '../auth/identity.js';
import { hashOf } from './tickets.js';

/** A working day: long enough for a debugging session, short enough that a lost cookie dies. */
export const SESSION_TTL_MS = 8 * 3600 * 1000;
/** Sessions kept at most; the oldest go first. */
const MAX_SESSIONS = 1024;
/**
 * `__Host-` makes the browser insist on Secure, Path=/ and no Domain, so no other host (or a
 * plain-HTTP page) can plant or overwrite the cookie.
 */
const COOKIE_PREFIX = '__Host-jiglet-';
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** A browser session. */
export interface WebSession {
  /** The SHA-256 of the cookie's secret: the store's key, not itself a credential. */
  key: string;
  identity: Identity;
  dut: string;
  expiresAt: number;
}

/** The agent's browser sessions, in memory. */
export class SessionStore {
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #sessions = new Map<string, WebSession>();

  constructor(opts: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.ttlMs ?? SESSION_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Opens a session; returns the cookie's value and the session. */
  open(identity: Identity, dut: string): { secret: string; session: WebSession } {
    this.#prune();
    if (this.#sessions.size >= MAX_SESSIONS) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest !== undefined) this.#sessions.delete(oldest);
    }
    const secret = randomBytes(32).toString('base64url');
    const session = { key: hashOf(secret), identity, dut, expiresAt: this.#now() + this.#ttlMs };
    this.#sessions.set(session.key, session);
    return { secret, session };
  }

  /** The live session for `dut` named by the request's cookies, if any. */
  forDut(cookies: ReadonlyMap<string, string>, dut: string): WebSession | undefined {
    const secret = cookies.get(cookieName(dut));
    return secret === undefined ? undefined : this.#lookup(secret, dut);
  }

  /** Every live session the request's cookies name (the DUT list accepts any of them). */
  all(cookies: ReadonlyMap<string, string>): WebSession[] {
    const found: WebSession[] = [];
    for (const [name, secret] of cookies) {
      if (!name.startsWith(COOKIE_PREFIX)) continue;
      const session = this.#lookup(secret, name.slice(COOKIE_PREFIX.length));
      if (session) found.push(session);
    }
    return found;
  }

  /** True while `session` has neither expired nor been dropped. */
  alive(session: WebSession): boolean {
    return this.#now() < session.expiresAt && this.#sessions.get(session.key) === session;
  }

  /** Forgets every session (the agent is stopping). */
  clear(): void {
    this.#sessions.clear();
  }

  #lookup(secret: string, dut: string): WebSession | undefined {
    if (!SECRET_PATTERN.test(secret)) return undefined;
    const hash = hashOf(secret);
    const session = this.#sessions.get(hash);
    if (!session) return undefined;
    if (this.#now() >= session.expiresAt) {
      this.#sessions.delete(hash);
      return undefined;
    }
    // The cookie's name says which DUT; a secret moved to another DUT's cookie is worthless.
    return session.dut === dut ? session : undefined;
  }

  #prune(): void {
    const now = this.#now();
    for (const [hash, s] of this.#sessions) if (now >= s.expiresAt) this.#sessions.delete(hash);
  }
}

/** The cookie that carries the session of `dut`'s console. */
export function cookieName(dut: string): string {
  return `${COOKIE_PREFIX}${dut}`;
}

/** Parses a Cookie header; a repeated name keeps its first value (the most specific path). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/** The Set-Cookie value for a new session: script-proof, HTTPS-only, never sent cross-site. */
export function sessionCookie(dut: string, secret: string, maxAgeMs: number): string {
  return `${cookieName(dut)}=${secret}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}`;
}
