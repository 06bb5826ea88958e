/**
 * Web console tickets: what a mutual-TLS caller gets to open the console in a browser, which
 * cannot present our client certificates. A ticket is 256 random bits, good for one use within
 * a short TTL, and bound to the identity, role and DUT it was issued for. Only its SHA-256 is
 * kept, so the store (a memory dump, a log line) never holds a usable ticket, and a lookup by
 * hash leaks nothing about the ticket through timing. Tickets do not survive a restart.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Identity } from '../auth/identity.js';

/** How long a ticket may wait to be traded: long enough to click a printed link. */
export const DEFAULT_TICKET_TTL_MS = 60_000;
/** Outstanding tickets kept at most; the oldest go first (they are the nearest to expiring). */
const MAX_TICKETS = 1024;
/** Spent tickets remembered (until their expiry) so a reuse is told apart from a forgery. */
const MAX_SPENT = 4096;
/** 256 bits as base64url: 43 characters. */
const TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** What a ticket stands for. */
export interface TicketGrant {
  identity: Identity;
  dut: string;
}

/** A ticket just issued: the secret itself is only in here. */
export interface IssuedTicket {
  ticket: string;
  expiresAt: number;
}

/** Why a ticket was refused, for the page the browser shows. */
export type TicketRefusal = 'unknown' | 'used' | 'expired';

interface Outstanding extends TicketGrant {
  expiresAt: number;
}

/** The agent's outstanding tickets, in memory. */
export class TicketStore {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #outstanding = new Map<string, Outstanding>();
  readonly #spent = new Map<string, number>(); // hash → when the ticket would have expired

  constructor(opts: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.ttlMs ?? DEFAULT_TICKET_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** The TTL tickets are issued with. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Issues a ticket for `grant`. */
  issue(grant: TicketGrant): IssuedTicket {
    this.#prune();
    if (this.#outstanding.size >= MAX_TICKETS) {
      const oldest = this.#outstanding.keys().next().value;
      if (oldest !== undefined) this.#outstanding.delete(oldest);
    }
    const ticket = randomBytes(32).toString('base64url');
    const expiresAt = this.#now() + this.#ttlMs;
    this.#outstanding.set(hashOf(ticket), { identity: grant.identity, dut: grant.dut, expiresAt });
    return { ticket, expiresAt };
  }

  /** Trades a ticket for what it stands for, once; a refusal says why. */
  redeem(ticket: string): { grant: TicketGrant } | { refused: TicketRefusal } {
    if (!TICKET_PATTERN.test(ticket)) return { refused: 'unknown' };
    const hash = hashOf(ticket);
    const now = this.#now();
    const found = this.#outstanding.get(hash);
    if (!found) {
      const spentUntil = this.#spent.get(hash);
      if (spentUntil === undefined) return { refused: 'unknown' };
      return { refused: now < spentUntil ? 'used' : 'expired' };
    }
    this.#outstanding.delete(hash);
    this.#remember(hash, found.expiresAt);
    if (now >= found.expiresAt) return { refused: 'expired' };
    return { grant: { identity: found.identity, dut: found.dut } };
  }

  /** Forgets every ticket (the agent is stopping). */
  clear(): void {
    this.#outstanding.clear();
    this.#spent.clear();
  }

  #remember(hash: string, expiresAt: number): void {
    if (this.#spent.size >= MAX_SPENT) {
      const oldest = this.#spent.keys().next().value;
      if (oldest !== undefined) this.#spent.delete(oldest);
    }
    this.#spent.set(hash, expiresAt);
  }

  /** Expired outstanding tickets are kept as spent, so the browser hears "expired", not "unknown". */
  #prune(): void {
    const now = this.#now();
    for (const [hash, t] of this.#outstanding) {
      if (now < t.expiresAt) continue;
      this.#outstanding.delete(hash);
      this.#remember(hash, t.expiresAt);
    }
    for (const [hash, until] of this.#spent) if (now >= until + this.#ttlMs) this.#spent.delete(hash);
  }
}

/** SHA-256 of a secret, hex: the key tickets and sessions are stored under. */
export function hashOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
