/**
 * The agent's web console (`jiglet serve --web HOST:PORT`): HTTPS with TLS 1.3 and the agent's own
 * server certificate (no client certificate asked for: browsers cannot easily present ours), a
 * DUT list, and a live serial console per DUT over a WebSocket.
 *
 * Access: a mutual-TLS caller gets a ticket (WebService.IssueTicket); `GET /t/TICKET` trades it,
 * once, for a session cookie bound to the ticket's identity, role and DUT. Pages are shells that
 * need no session (a Strict cookie is not sent on a cross-site navigation, e.g. a link clicked in
 * a chat); what they show comes from requests that do: the DUT list, `/api/session/D`, and the
 * WebSocket `/ws/D`, which also checks that its Origin is this very origin.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { type WebSocket, WebSocketServer } from 'ws';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { CLOSE, type ServedConsole, serveConsoleSocket } from './console-socket.js';
import { newNonce, setSecurityHeaders } from './http-security.js';
import { consolePage, type DutRow, dutListPage, messagePage } from './pages.js';
import { parseCookies, SESSION_TTL_MS, SessionStore, sessionCookie } from './sessions.js';
import { loadStaticFiles } from './static-files.js';
import { type IssuedTicket, type TicketRefusal, TicketStore } from './tickets.js';

/** Largest keystroke message taken from a page (as MAX_CONSOLE_INPUT for the gRPC console). */
const MAX_INPUT_BYTES = 64 * 1024;
/** A dead browser (laptop lid closed) is noticed within two of these. */
const PING_INTERVAL_MS = 30_000;
/** A TLS handshake that has not finished by then is dropped. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Sockets get this long to close cleanly when the agent stops. */
const CLOSE_GRACE_MS = 1000;
const DUT_NAME = '[a-z0-9][a-z0-9-]{0,62}';
const HTML = 'text/html; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const NEW_LINK = 'Ask for a new link with: jigctl console --web --dut DUT';

/** A running web console. */
export interface WebConsole {
  readonly port: number;
  /** How long a ticket is good for. */
  readonly ticketTtlMs: number;
  /** Issues a ticket for `identity` and `dut`, and the URL that trades it. */
  issueTicket(identity: Identity, dut: string, callerHost?: string): IssuedTicket & { url: string };
  /**
   * Open console sockets, the bytes queued on them not yet handed to the network, and how many
   * of them wait for a page that does not keep up (their log reading paused).
   */
  stats(): { consoles: number; bufferedBytes: number; heldBack: number };
  /** Ends every session and socket and stops listening. */
  close(): Promise<void>;
}

/** Starts the web console on `listen` (HOST:PORT, port 0 = any free port). */
export async function startWebConsole(opts: {
  listen: string;
  tls: { cert: Buffer; key: Buffer };
  jig: JigRuntime;
  leases: LeaseManager;
  log: Logger;
  ticketTtlMs?: number;
}): Promise<WebConsole> {
  const { jig, leases } = opts;
  const log = opts.log.child({ component: 'web' });
  const { host, port: wantedPort } = parseListen(opts.listen);
  const statics = loadStaticFiles();
  const tickets = new TicketStore({ ttlMs: opts.ticketTtlMs });
  const sessions = new SessionStore();
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_INPUT_BYTES });
  const sockets = new Set<Socket>();
  const consoles = new Map<WebSocket, ServedConsole>();
  const alive = new WeakSet<WebSocket>();

  const send = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    extra: { nonce?: string; cache?: boolean } = {},
  ): void => {
    setSecurityHeaders(res, { nonce: extra.nonce, cache: extra.cache ?? false });
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const page = (req: IncomingMessage, res: ServerResponse, status: number, title: string, message: string) =>
    send(req, res, status, HTML, messagePage(title, message, NEW_LINK));

  const routes: [RegExp, (req: IncomingMessage, res: ServerResponse, arg: string) => void][] = [
    [/^\/$/, (req, res) => listDuts(req, res)],
    [/^\/t\/([^/]+)$/, (req, res, ticket) => trade(req, res, ticket)],
    [new RegExp(`^/console/(${DUT_NAME})$`), (req, res, dut) => consoleShell(req, res, dut)],
    [new RegExp(`^/api/session/(${DUT_NAME})$`), (req, res, dut) => sessionInfo(req, res, dut)],
  ];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      page(req, res, 405, 'Method not allowed', `${req.method} is not served here.`);
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/favicon.ico') {
      // Browsers ask for one on every page; "none" without a logged 404.
      setSecurityHeaders(res, { cache: true });
      res.writeHead(204);
      res.end();
      return;
    }
    const file = statics.get(path);
    if (file) {
      send(req, res, 200, file.contentType, file.body, { cache: true });
      return;
    }
    for (const [pattern, route] of routes) {
      const m = pattern.exec(path);
      if (m) {
        route(req, res, m[1] ?? '');
        return;
      }
    }
    page(req, res, 404, 'Not found', 'There is no such page.');
  };

  const listDuts = (req: IncomingMessage, res: ServerResponse): void => {
    const cookies = parseCookies(req.headers.cookie);
    const who = sessions.all(cookies)[0];
    if (!who) {
      page(req, res, 401, 'No console session', 'This browser holds no console session.');
      return;
    }
    const held = new Map(leases.list().map((l) => [l.dut, l]));
    const rows: DutRow[] = jig.list().map((d) => {
      const health = jig.health(d.dut.name).record;
      const lease = held.get(d.dut.name);
      return {
        name: d.dut.name,
        labels: d.dut.labels,
        power: d.dut.power ? d.power.state : 'none',
        holder: lease?.holder ?? '',
        leaseExpires: lease?.expiresAt,
        health: health.state,
        healthReason: health.reason,
        serial: d.dut.serial ? (d.capture?.state ?? 'stopped') : 'none',
        hasSession: sessions.forDut(cookies, d.dut.name) !== undefined,
      };
    });
    send(req, res, 200, HTML, dutListPage(who.identity, rows));
  };

  const trade = (req: IncomingMessage, res: ServerResponse, ticket: string): void => {
    // A HEAD (a link checker, a preview) must not spend the single-use ticket.
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      page(req, res, 405, 'Method not allowed', 'A console link is opened with GET.');
      return;
    }
    const result = tickets.redeem(ticket);
    if ('refused' in result) {
      log.info({ reason: result.refused, peer: req.socket.remoteAddress }, 'web console ticket refused');
      const refusals: Record<TicketRefusal, [string, string]> = {
        unknown: ['Console link refused', 'This link is not a valid console ticket.'],
        used: [
          'Console link already used',
          'This link has been used already: a link opens one session, once.',
        ],
        expired: [
          'Console link expired',
          `This link has expired: a link must be opened within ${Math.round(tickets.ttlMs / 1000)} s.`,
        ],
      };
      const [title, message] = refusals[result.refused];
      page(req, res, 403, title, message);
      return;
    }
    const { identity, dut } = result.grant;
    const { secret } = sessions.open(identity, dut);
    log.info({ identity: identity.name, role: identity.role, dut }, 'web console session opened');
    setSecurityHeaders(res, { cache: false });
    res.writeHead(303, {
      'Set-Cookie': sessionCookie(dut, secret, SESSION_TTL_MS),
      Location: `/console/${dut}`,
      'Content-Length': 0,
    });
    res.end();
  };

  const consoleShell = (req: IncomingMessage, res: ServerResponse, dut: string): void => {
    if (!jig.list().some((d) => d.dut.name === dut)) {
      page(req, res, 404, 'No such DUT', `This agent has no DUT ${dut}.`);
      return;
    }
    const nonce = newNonce();
    send(req, res, 200, HTML, consolePage(dut, nonce), { nonce });
  };

  const sessionInfo = (req: IncomingMessage, res: ServerResponse, dut: string): void => {
    const session = sessions.forDut(parseCookies(req.headers.cookie), dut);
    if (!session) {
      const error = `This browser has no session for the console of ${dut}. ${NEW_LINK.replace('DUT', dut)}`;
      send(req, res, 401, JSON_TYPE, JSON.stringify({ error }));
      return;
    }
    const { name, role } = session.identity;
    send(req, res, 200, JSON_TYPE, JSON.stringify({ dut, identity: name, role, expires: session.expiresAt }));
  };

  const upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    const dut = new RegExp(`^/ws/(${DUT_NAME})$`).exec((req.url ?? '').split('?')[0]!)?.[1];
    if (!dut) {
      refuseUpgrade(socket, 404, 'Not Found');
      return;
    }
    // Cross-site WebSocket hijacking: a page elsewhere would send our cookie along, so only a page
    // of this very origin may open a console (SameSite=Strict is the second lock).
    if (!req.headers.origin || req.headers.origin !== `https://${req.headers.host ?? ''}`) {
      log.warn(
        { origin: req.headers.origin, peer: req.socket.remoteAddress },
        'cross-origin console refused',
      );
      refuseUpgrade(socket, 403, 'Forbidden');
      return;
    }
    const session = sessions.forDut(parseCookies(req.headers.cookie), dut);
    if (!session) {
      refuseUpgrade(socket, 403, 'Forbidden');
      return;
    }
    let runtime: ReturnType<JigRuntime['get']>;
    try {
      runtime = jig.get(dut);
    } catch {
      refuseUpgrade(socket, 404, 'Not Found');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      alive.add(ws);
      ws.on('pong', () => alive.add(ws));
      const served = serveConsoleSocket({ ws, session, sessions, dut: runtime, leases, log });
      consoles.set(ws, served);
      void served.done.then(() => consoles.delete(ws));
    });
  };

  const server: Server = createServer(
    {
      cert: opts.tls.cert,
      key: opts.tls.key,
      minVersion: 'TLSv1.3',
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    },
    handle,
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', upgrade);
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'web console TLS handshake failed'));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void =>
      reject(invalidArgument(`cannot serve the web console on ${opts.listen}: ${err.message}`));
    server.once('error', onError);
    server.listen(wantedPort, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'web console server error'));
  const port = (server.address() as { port: number }).port;
  log.info({ listen: opts.listen, port }, 'web console listening (HTTPS, TLS 1.3)');

  const ping = setInterval(() => {
    for (const ws of consoles.keys()) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, PING_INTERVAL_MS);
  ping.unref();

  let closing: Promise<void> | undefined;
  return {
    port,
    ticketTtlMs: tickets.ttlMs,
    issueTicket(identity, dut, callerHost) {
      const issued = tickets.issue({ identity, dut });
      return { ...issued, url: `https://${urlHost(host, callerHost)}:${port}/t/${issued.ticket}` };
    },
    stats() {
      let bufferedBytes = 0;
      let heldBack = 0;
      for (const [ws, served] of consoles) {
        bufferedBytes += ws.bufferedAmount;
        if (served.heldBack) heldBack += 1;
      }
      return { consoles: consoles.size, bufferedBytes, heldBack };
    },
    close() {
      closing ??= (async () => {
        clearInterval(ping);
        tickets.clear();
        sessions.clear();
        server.close();
        for (const ws of consoles.keys()) ws.close(CLOSE.goingAway, 'the agent is stopping');
        const grace = setTimeout(() => {
          for (const ws of consoles.keys()) ws.terminate();
        }, CLOSE_GRACE_MS);
        await Promise.all([...consoles.values()].map((c) => c.done));
        clearTimeout(grace);
        for (const socket of sockets) socket.destroy();
        wss.close();
        log.info('web console stopped');
      })();
      return closing;
    },
  };
}

function refuseUpgrade(socket: Socket, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () =>
    socket.destroy(),
  );
}

/** HOST:PORT or [IPv6]:PORT. */
function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:]+)\]:(\d{1,5})$|^([^\s:[\]]+):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[2] ?? m?.[4]);
  if (!m || port > 65535) throw invalidArgument(`--web ${listen}: expected HOST:PORT`);
  return { host: m[1] ?? m[3]!, port };
}

/**
 * The host a ticket's URL names: the one the web console listens on, or, for a wildcard
 * listener, the one the caller reached the agent by (its gRPC authority, without the port).
 */
function urlHost(listenHost: string, callerHost: string | undefined): string {
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  const chosen =
    wildcard && callerHost ? callerHost.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1') : listenHost;
  return chosen.includes(':') ? `[${chosen}]` : chosen;
}
