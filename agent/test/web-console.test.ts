/**
 * The web console at the HTTP and WebSocket level, without a browser: TLS 1.3 only, the headers
 * every response carries, tickets (single use, expiry, forgery), the session cookie's flags, the
 * WebSocket's Origin and session checks, who may type, binary safety, resuming, and backpressure.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { startWebJig } from '../../fixtures/test-support/browser.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import type { VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { HIGH_WATER_BYTES } from '../src/web/console-socket.js';

/** Short, so the expiry test waits little; trades in the other tests follow their issue at once. */
const TICKET_TTL_MS = 1500;
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One console socket as a test sees it: binary frames decoded, control messages kept. */
interface TestSocket {
  ws: WebSocket;
  /** DUT bytes received, in order, and how many. */
  data(): Buffer;
  received(): number;
  /** The offset after the last record received, and the capture job it belongs to. */
  offset: number | undefined;
  capture: string | undefined;
  messages: Record<string, unknown>[];
  /** Resolves with the first control message from index `from` on (received or to come) that matches. */
  message(
    type: string,
    match?: (m: Record<string, unknown>) => boolean,
    from?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves once the bytes received since byte `from` contain `text`. */
  until(text: string, from?: number): Promise<void>;
}

describe('web console (HTTP and WebSocket)', function () {
  this.timeout(30_000);
  let v: VirtualJig & { webPort: number };
  let ca: Buffer;
  let origin: string;

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: v.webPort, path, method, headers, ca, minVersion: 'TLSv1.3' },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (s: string) => {
            body += s;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  const ticketPath = async (who: string, dut = 'vdut-a'): Promise<string> =>
    new URL((await v.t.client(who).web.ticket(dut)).url).pathname;

  /** Trades a fresh ticket of `who` and returns the session cookie (name=value). */
  const session = async (who: string, dut = 'vdut-a'): Promise<string> => {
    const res = await get(await ticketPath(who, dut));
    assert.equal(res.status, 303);
    return String(res.headers['set-cookie']?.[0]).split(';')[0]!;
  };

  const connect = (headers: Record<string, string>, dut = 'vdut-a'): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${v.webPort}/ws/${dut}`, { ca, headers });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        ws.terminate();
        reject(Object.assign(new Error(`refused with ${res.statusCode}`), { status: res.statusCode }));
      });
      ws.once('error', reject);
    });

  const open = async (
    cookie: string,
    hello: Record<string, unknown> = {},
    dut = 'vdut-a',
  ): Promise<TestSocket> => {
    const ws = await connect({ Cookie: cookie, Origin: origin }, dut);
    const chunks: Buffer[] = [];
    let length = 0;
    /** The last `n` bytes received, joined (only those: a long stream is never joined whole). */
    const tail = (n: number): Buffer => {
      const parts: Buffer[] = [];
      let got = 0;
      for (let i = chunks.length - 1; i >= 0 && got < n; i--) {
        parts.unshift(chunks[i]!);
        got += chunks[i]!.length;
      }
      const joined = Buffer.concat(parts);
      return joined.subarray(Math.max(0, joined.length - n));
    };
    /** Resolves when `found()` holds after some message, or now; rejects on close. */
    const when = <T>(what: string, found: () => T | undefined): Promise<T> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = found();
          if (hit === undefined) return;
          ws.off('message', check);
          ws.off('close', onClose);
          resolve(hit);
        };
        const onClose = (): void => {
          ws.off('message', check);
          reject(new Error(`closed before ${what}`));
        };
        ws.on('message', check);
        ws.once('close', onClose);
        check();
      });
    const sock: TestSocket = {
      ws,
      data: () => Buffer.concat(chunks),
      received: () => length,
      offset: undefined,
      capture: undefined,
      messages: [],
      message: (type, match = () => true, from = 0) =>
        when(`a ${type} message`, () => sock.messages.slice(from).find((m) => m.type === type && match(m))),
      until: (text, from = 0) => {
        // Each check looks at the bytes a match could newly end in, so following MiBs stays linear.
        let scanned = from;
        return when(JSON.stringify(text), () => {
          const window = tail(length - Math.max(from, scanned - text.length));
          scanned = length;
          return window.includes(text) ? true : undefined;
        }).then(() => undefined);
      },
    };
    // Registered before hello is sent: it sees every message first, the waiters after it.
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) {
        sock.offset = Number(data.readBigUInt64BE(0));
        chunks.push(data.subarray(8));
        length += data.length - 8;
        return;
      }
      const m = JSON.parse(data.toString()) as Record<string, unknown>;
      sock.messages.push(m);
      if (m.type === 'capture') sock.capture = m.captureJobId as string;
      if (m.type === 'event') sock.offset = m.nextOffset as number;
    });
    ws.send(JSON.stringify({ type: 'hello', ...hello }));
    return sock;
  };

  const close = async (sock: TestSocket): Promise<void> => {
    if (sock.ws.readyState === WebSocket.CLOSED) return;
    // A paused socket never reads the agent's close frame (behind what it left unread).
    sock.ws.resume();
    sock.ws.close();
    await once(sock.ws, 'close');
  };

  before(async () => {
    v = await startWebJig(['vdut-a', 'vdut-b'], { ticketTtlMs: TICKET_TTL_MS });
    ca = readFileSync(join(v.t.pki.dir, 'ca.crt'));
    origin = `https://127.0.0.1:${v.webPort}`;
    const on = await v.t.client('operator').jig.power('vdut-a', 'on');
    await v.t.client('viewer').jig.expect('vdut-a', 'login: $', { offset: on.serialOffset });
  });
  after(async () => {
    await v?.stop();
  });

  it('speaks TLS 1.3 only, with the agent’s server certificate', async () => {
    const attempt = (opts: tls.ConnectionOptions) =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: v.webPort, ca, ...opts }, () => resolve(s));
        s.once('error', reject);
      });
    await assert.rejects(attempt({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }), /version|protocol/i);
    const s = await attempt({ minVersion: 'TLSv1.3' });
    try {
      assert.equal(s.getProtocol(), 'TLSv1.3');
      const server = new X509Certificate(readFileSync(join(v.t.pki.jigDir, 'server.crt')));
      assert.equal(s.getPeerX509Certificate()?.fingerprint256, server.fingerprint256);
    } finally {
      s.destroy();
    }
  });

  it('issues a 256-bit ticket with a URL on the web listener, to a viewer too', async () => {
    const before = Date.now();
    const t = await v.t.client('viewer').web.ticket('vdut-a');
    assert.match(t.ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(t.url, `https://127.0.0.1:${v.webPort}/t/${t.ticket}`);
    assert.ok(t.expires.getTime() >= before + TICKET_TTL_MS - 50);
    assert.ok(t.expires.getTime() <= Date.now() + TICKET_TTL_MS + 50);
    const unknown = await errorOf(v.t.client('viewer').web.ticket('nope'));
    assert.equal(unknown.code, 'JIGLET_E_NOT_FOUND');
  });

  it('trades a ticket once for a Secure, HttpOnly, SameSite=Strict session cookie', async () => {
    const path = await ticketPath('operator');
    // A link checker's HEAD does not spend the ticket.
    assert.equal((await get(path, {}, 'HEAD')).status, 405);
    const first = await get(path);
    assert.equal(first.status, 303);
    assert.equal(first.headers.location, '/console/vdut-a');
    const cookie = String(first.headers['set-cookie']?.[0]);
    assert.match(cookie, /^__Host-jiglet-vdut-a=[A-Za-z0-9_-]{43}; /);
    for (const flag of ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Strict', 'Max-Age=28800'])
      assert.ok(cookie.split('; ').includes(flag), `${flag} in ${cookie}`);
    assert.ok(!/Domain=/i.test(cookie));

    const again = await get(path);
    assert.equal(again.status, 403);
    assert.match(again.body, /used already/);
    assert.equal(again.headers['set-cookie'], undefined);
    const forged = await get(`/t/${'A'.repeat(43)}`);
    assert.equal(forged.status, 403);
    assert.match(forged.body, /not a valid console ticket/);
    const garbage = await get('/t/%3Cscript%3E');
    assert.equal(garbage.status, 403);
    assert.doesNotMatch(garbage.body, /<script>/);
  });

  it('refuses a ticket that has expired', async () => {
    const t = await v.t.client('operator').web.ticket('vdut-a');
    await waitUntil('the ticket to expire', () => Date.now() > t.expires.getTime() + 10, TICKET_TTL_MS * 3);
    const res = await get(new URL(t.url).pathname);
    assert.equal(res.status, 403);
    assert.match(res.body, /expired/);
    assert.equal(res.headers['set-cookie'], undefined);
  });

  it('sends a strict CSP and no CORS headers on every response', async () => {
    const cookie = await session('viewer');
    const answers = await Promise.all([
      get('/', { Cookie: cookie, Origin: 'https://evil.example' }),
      get('/console/vdut-a', { Origin: 'https://evil.example' }),
      get('/static/console.js'),
      get('/static/xterm.mjs'),
      get('/api/session/vdut-a', { Cookie: cookie }),
      get('/no/such/page'),
      get(await ticketPath('viewer')),
      get('/', {}, 'OPTIONS'),
    ]);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200, 200, 200, 404, 303, 405],
    );
    for (const a of answers) {
      const csp = String(a.headers['content-security-policy']);
      for (const directive of [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "img-src 'self'",
      ])
        assert.ok(csp.split('; ').includes(directive), `${directive} in ${csp}`);
      assert.doesNotMatch(csp, /script-src[^;]*unsafe/);
      assert.equal(a.headers['x-content-type-options'], 'nosniff');
      assert.equal(a.headers['referrer-policy'], 'no-referrer');
      for (const name of Object.keys(a.headers)) assert.ok(!name.startsWith('access-control-'), name);
    }
    const [list, page, script] = answers;
    assert.equal(list!.headers['cache-control'], 'no-store');
    assert.equal(page!.headers['cache-control'], 'no-store');
    assert.match(list!.body, /vdut-a/);
    assert.match(list!.body, /viewer \(viewer\)/);
    assert.equal(script!.headers['content-type'], 'text/javascript; charset=utf-8');
    // The console page's style nonce is fresh per response, and no page has inline script.
    const nonce = /'nonce-([^']+)'/.exec(String(page!.headers['content-security-policy']))?.[1];
    assert.ok(nonce && page!.body.includes(`nonce="${nonce}"`));
    assert.doesNotMatch(page!.body, /<script>|<script [^>]*>[^<]|<style|style=|\son[a-z]+=/);
    const other = await get('/console/vdut-a');
    assert.ok(!String(other.headers['content-security-policy']).includes(nonce));
    // Without a session, the list and the session API say so.
    assert.equal((await get('/')).status, 401);
    assert.equal((await get('/api/session/vdut-a')).status, 401);
    assert.equal((await get('/api/session/vdut-b', { Cookie: cookie })).status, 401);
  });

  it('opens a console socket only for its own origin with a session for that DUT', async () => {
    const cookie = await session('viewer');
    const refusal = (headers: Record<string, string>, dut?: string) =>
      connect(headers, dut).then(
        (ws) => {
          ws.terminate();
          return 101;
        },
        (err: { status?: number }) => err.status,
      );
    assert.equal(await refusal({ Cookie: cookie, Origin: 'https://evil.example' }), 403);
    assert.equal(await refusal({ Cookie: cookie, Origin: `http://127.0.0.1:${v.webPort}` }), 403);
    assert.equal(await refusal({ Cookie: cookie }), 403);
    assert.equal(await refusal({ Origin: origin }), 403);
    assert.equal(await refusal({ Cookie: cookie.replace(/=.*/, `=${'B'.repeat(43)}`), Origin: origin }), 403);
    // A session is for one DUT: the same secret under vdut-b's cookie name opens nothing.
    assert.equal(
      await refusal({ Cookie: cookie.replace('vdut-a', 'vdut-b'), Origin: origin }, 'vdut-b'),
      403,
    );
    assert.equal(await refusal({ Cookie: cookie, Origin: origin }), 101);
  });

  it('lets the lease holder type; drops a viewer’s and a non-holder’s keystrokes', async () => {
    // vdut-b: the end of the lease powers it off (its safe state), which the other tests must not see.
    const on = await v.t.client('operator').jig.power('vdut-b', 'on');
    await v.t.client('viewer').jig.expect('vdut-b', 'login: $', { offset: on.serialOffset });
    const dut = v.dut('vdut-b');
    const received: Buffer[] = [];
    const onRx = (b: Buffer) => received.push(b);
    dut.events.on('rx', onRx);
    const viewer = await open(await session('viewer', 'vdut-b'), {}, 'vdut-b');
    const op = await open(await session('operator', 'vdut-b'), {}, 'vdut-b');
    try {
      const viewerState = await viewer.message('state');
      assert.equal(viewerState.writable, false);
      assert.match(String(viewerState.reason), /may watch but not type/);
      const unleased = await op.message('state');
      assert.equal(unleased.writable, false);
      assert.match(String(unleased.reason), /does not hold the lease/);
      op.ws.send(Buffer.from('x'));
      viewer.ws.send(Buffer.from('y'));
      // The agent answers each drop: by then the bytes have been thrown away, not queued.
      await op.message('dropped');
      await viewer.message('dropped');
      assert.equal(received.length, 0);

      await v.t.client('operator').withLease({ dut: 'vdut-b' }, async () => {
        await op.message('state', (m) => m.writable === true);
        const from = op.received();
        op.ws.send(Buffer.from('root\r'));
        await op.until('Password: ', from);
        // Every byte value travels from the page to the DUT unchanged.
        received.length = 0;
        op.ws.send(ALL_BYTES);
        await waitUntil('256 bytes at the DUT', () => Buffer.concat(received).length >= 256);
        assert.deepEqual(Buffer.concat(received), ALL_BYTES);
        const seen = viewer.messages.length;
        viewer.ws.send(Buffer.from('z'));
        await viewer.message('dropped', undefined, seen);
        assert.equal(Buffer.concat(received).length, 256);
        const duts = await v.t.client('viewer').jig.duts();
        assert.equal(duts.find((d) => d.name === 'vdut-b')?.serial?.consoleWriter, 'operator');
      });
      // The lease ended: the page hears it is read-only, and the console writer is let go.
      await op.message('state', (m) => m.writable === false && m.holder === '');
      await waitUntil('the writer to be released', () => v.t.agent.jig.get('vdut-b').writer === undefined);
    } finally {
      dut.events.off('rx', onRx);
      await close(viewer);
      await close(op);
    }
  });

  it('passes every byte value from the DUT to the page unchanged', async () => {
    const sock = await open(await session('viewer'));
    try {
      await sock.message('capture');
      const payload = Buffer.concat([Buffer.from('<<<'), ALL_BYTES, Buffer.from('>>>')]);
      v.dut('vdut-a').inject(payload);
      await sock.until('>>>');
      const data = sock.data();
      const start = data.lastIndexOf('<<<');
      assert.deepEqual(data.subarray(start, start + payload.length), payload);
    } finally {
      await close(sock);
    }
  });

  it('resumes from the offset the page reached, without repeating anything', async () => {
    const cookie = await session('viewer');
    const first = await open(cookie);
    v.dut('vdut-a').inject(Buffer.from('mark-1\r\n'));
    await first.until('mark-1');
    const { offset, capture } = first;
    await close(first);
    v.dut('vdut-a').inject(Buffer.from('mark-2\r\n'));
    const second = await open(cookie, { offset, capture });
    try {
      await second.until('mark-2');
      assert.ok(!second.data().includes('mark-1'), second.data().toString('latin1'));
      assert.match(second.data().toString('latin1'), /^mark-2\r\n/);
    } finally {
      await close(second);
    }
    // A first visit gets recent history instead.
    const fresh = await open(cookie);
    try {
      await fresh.until('mark-2');
      assert.ok(fresh.data().includes('mark-1'));
    } finally {
      await close(fresh);
    }
  });

  it('stops reading the log while a page does not keep up (bufferedAmount), and loses nothing', async () => {
    const web = v.t.agent.web!;
    const viewer = v.t.client('viewer');
    const sock = await open(await session('viewer'));
    try {
      await sock.until('mark-2');
      const from = sock.received();
      // The page stops reading: TCP fills up, then the agent's socket buffer.
      sock.ws.pause();
      // 16 MiB, more than loopback's socket buffers hold, in pieces the DUT's pty takes whole (its
      // helper drops what a reader leaves queued past 1 MiB, as a UART would).
      const line = `${'x'.repeat(1022)}\r\n`;
      const sent: Buffer[] = [];
      let offset = (await viewer.jig.duts()).find((d) => d.name === 'vdut-a')!.serial!.endOffset;
      for (let i = 0; i < 32; i++) {
        const batch = Buffer.from(`${line.repeat(511)}batch-${i}\r\n`);
        sent.push(batch);
        v.dut('vdut-a').inject(batch);
        offset = BigInt(
          (await viewer.jig.expect('vdut-a', `^batch-${i}$`, { offset: Number(offset) })).nextOffset,
        );
      }
      // The pump stops once the socket holds HIGH_WATER_BYTES (the network may take a little
      // more afterwards, so the buffer can sit just under the mark while it waits).
      await waitUntil('the console to wait for the page', () => web.stats().heldBack === 1);
      // At most one read piece (256 KiB) lands on top of the mark.
      const bound = HIGH_WATER_BYTES + 256 * 1024 + 64 * 1024;
      assert.ok(web.stats().bufferedBytes <= bound, `${web.stats().bufferedBytes} > ${bound}`);
      sock.ws.resume();
      await sock.until('batch-31\r\n', from);
      assert.ok(sock.data().subarray(from).equals(Buffer.concat(sent)));
    } finally {
      await close(sock);
    }
  });

  it('closes every console socket and forgets every session when the agent stops', async () => {
    const leases = v.t.agent.leases;
    const listeners = leases.listenerCount('change');
    const cookie = await session('viewer');
    const sock = await open(cookie);
    await sock.message('state');
    assert.equal(v.t.agent.web!.stats().consoles, 1);
    assert.equal(leases.listenerCount('change'), listeners + 1);
    const [code] = await Promise.all([
      once(sock.ws, 'close').then(([c]) => c as number),
      v.t.agent.web!.close(),
    ]);
    assert.equal(code, 1001);
    assert.equal(v.t.agent.web!.stats().consoles, 0);
    // Nothing is left hanging on the agent: no lease listener, no console writer.
    assert.equal(leases.listenerCount('change'), listeners);
    assert.equal(v.t.agent.jig.get('vdut-a').writer, undefined);
  });
});
