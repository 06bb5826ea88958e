/**
 * The web console in a real browser: Debian's chromium, driven by playwright-core, against an
 * agent serving a virtual DUT. The browser trusts the agent's server certificate by its SPKI pin.
 * Screenshots land in test-artifacts/web-console/.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  launchChromium,
  saveScreenshot,
  startTcpRelay,
  startWebJig,
  terminalText,
  waitForTerminal,
} from '../fixtures/test-support/browser.js';
import type { VirtualJig } from '../fixtures/test-support/virtual-jig.js';
import { waitUntil } from '../fixtures/test-support/wait-until.js';

/** Long enough to load a page on a slow machine, short enough to wait out in the expiry test. */
const TICKET_TTL_MS = 3000;

/** The page-side globals these tests touch (the project compiles without lib.dom). */
declare const WebSocket: new (
  url: string,
) => {
  onopen: (() => void) | null;
  onclose: ((e: { code: number }) => void) | null;
};

interface ConsolePage {
  context: BrowserContext;
  page: Page;
  /** Console errors the page logged, CSP violations included. */
  errors: string[];
}

describe('web console in chromium', function () {
  this.timeout(60_000);
  let v: VirtualJig & { webPort: number };
  let browser: Browser;
  let origin: string;
  const contexts: BrowserContext[] = [];

  /** A fresh browser profile (no cookies) with an error log. */
  const newPage = async (): Promise<ConsolePage> => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (err) => errors.push(err.message));
    return { context, page, errors };
  };

  /**
   * Opens `who`'s console of vdut-a through a fresh ticket, as `jigctl console --web` prints it;
   * `port` reaches the agent another way (a relay).
   */
  const openConsole = async (who: string, port = v.webPort): Promise<ConsolePage> => {
    const cp = await newPage();
    const { url } = await v.t.client(who).web.ticket('vdut-a');
    const res = await cp.page.goto(url.replace(`:${v.webPort}/`, `:${port}/`));
    assert.equal(res?.status(), 200);
    assert.equal(cp.page.url(), `https://127.0.0.1:${port}/console/vdut-a`);
    await cp.page.locator('#mode', { hasText: /^read-/ }).waitFor();
    return cp;
  };

  const mode = (cp: ConsolePage) => cp.page.locator('#mode').textContent();

  const count = (text: string, part: string) => text.split(part).length - 1;

  before(async () => {
    v = await startWebJig(['vdut-a'], { ticketTtlMs: TICKET_TTL_MS });
    origin = `https://127.0.0.1:${v.webPort}`;
    browser = await launchChromium(join(v.t.pki.jigDir, 'server.crt'));
  });
  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await v?.stop();
  });

  it('shows the boot log live as the DUT powers on, and the DUT list', async () => {
    const cp = await openConsole('viewer');
    assert.equal(await mode(cp), 'read-only');
    await cp.page.locator('#who', { hasText: 'viewer (viewer)' }).waitFor();
    await v.t.client('operator').jig.power('vdut-a', 'on');
    await waitForTerminal(cp.page, 'Welcome to VirtualOS 1.0');
    await waitForTerminal(cp.page, 'vdut-a login:');
    await saveScreenshot(cp.page, 'boot');

    await cp.page.click('header a[href="/"]');
    const row = cp.page.locator('tbody tr', { hasText: 'vdut-a' });
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(0, 5), ['device-type=virtual', 'on', 'free', 'good', 'open']);
    assert.equal(await row.locator('a').getAttribute('href'), '/console/vdut-a');
    await saveScreenshot(cp.page, 'dut-list');
    // No CSP violation: xterm's runtime styles carry the page's nonce, and nothing else is inline.
    assert.deepEqual(cp.errors, []);
  });

  it('refuses a reused, a forged and an expired ticket, and a page without one', async () => {
    const cp = await newPage();
    const { url } = await v.t.client('operator').web.ticket('vdut-a');
    assert.equal((await cp.page.goto(url))?.status(), 200);
    const fresh = await newPage();
    const reused = await fresh.page.goto(url);
    assert.equal(reused?.status(), 403);
    assert.match((await fresh.page.locator('#message').textContent()) ?? '', /used already/);
    await saveScreenshot(fresh.page, 'ticket-reused');

    const forged = await fresh.page.goto(`${origin}/t/${'Q'.repeat(43)}`);
    assert.equal(forged?.status(), 403);
    assert.match((await fresh.page.locator('#message').textContent()) ?? '', /not a valid console ticket/);

    const late = await v.t.client('operator').web.ticket('vdut-a');
    await waitUntil(
      'the ticket to expire',
      () => Date.now() > late.expires.getTime() + 10,
      TICKET_TTL_MS * 3,
    );
    const expired = await fresh.page.goto(late.url);
    assert.equal(expired?.status(), 403);
    assert.match((await fresh.page.locator('#message').textContent()) ?? '', /expired/);
    await saveScreenshot(fresh.page, 'ticket-expired');

    // No ticket traded in this profile: the console page says so and connects nothing.
    await fresh.page.goto(`${origin}/console/vdut-a`);
    await fresh.page.locator('#mode', { hasText: 'no session' }).waitFor();
    assert.match(
      (await fresh.page.locator('#notice').textContent()) ?? '',
      /no session for the console of vdut-a/,
    );
    assert.equal(await fresh.page.locator('.xterm-rows').count(), 1);
    assert.equal((await fresh.page.goto(`${origin}/`))?.status(), 401);
  });

  it('refuses a WebSocket opened by another origin, even one the cookie goes to', async () => {
    // Another port of the same host is another origin but the same site: the browser sends the
    // session cookie along (SameSite cannot help), so only the agent's Origin check stands.
    const tlsDir = v.t.pki.jigDir;
    const other: Server = createServer(
      { cert: readFileSync(join(tlsDir, 'server.crt')), key: readFileSync(join(tlsDir, 'server.key')) },
      (_req, res) => res.end('<!doctype html><title>elsewhere</title>'),
    );
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const cp = await openConsole('operator');
      const tryOpen = (page: Page) =>
        page.evaluate(
          (url) =>
            new Promise<string>((resolve) => {
              const ws = new WebSocket(url);
              ws.onopen = () => resolve('open');
              ws.onclose = (e) => resolve(`closed ${e.code}`);
            }),
          `wss://127.0.0.1:${v.webPort}/ws/vdut-a`,
        );
      const handshakeErrors: string[] = [];
      cp.page.on('websocket', (ws) => ws.on('socketerror', (e) => handshakeErrors.push(e)));
      // From its own origin the same browser profile opens it...
      assert.equal(await tryOpen(cp.page), 'open');
      // ...from the other origin, never.
      const port = (other.address() as { port: number }).port;
      await cp.page.goto(`https://127.0.0.1:${port}/`);
      assert.equal(await tryOpen(cp.page), 'closed 1006');
      await waitUntil('the handshake error', () => handshakeErrors.length > 0);
      assert.match(handshakeErrors.join('\n'), /403/);
    } finally {
      other.closeAllConnections();
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('resumes from the last offset after a reconnect, without repeating output', async () => {
    // The browser reaches the agent through a relay: the network path that will fail.
    const relay = await startTcpRelay(v.webPort);
    try {
      const cp = await openConsole('viewer', relay.port);
      const dut = v.dut('vdut-a');
      dut.inject(Buffer.from('before-the-drop\r\n'));
      await waitForTerminal(cp.page, 'before-the-drop');
      // The network goes away: the socket closes and the page keeps trying until it is back.
      relay.setDown(true);
      await cp.page.locator('#conn', { hasText: 'reconnecting' }).waitFor();
      dut.inject(Buffer.from('while-away\r\n'));
      await v.t.client('viewer').jig.expect('vdut-a', '^while-away$');
      relay.setDown(false);
      await waitForTerminal(cp.page, 'while-away');
      await cp.page.locator('#conn', { hasText: /^connected$/ }).waitFor();
      dut.inject(Buffer.from('after-the-drop\r\n'));
      await waitForTerminal(cp.page, 'after-the-drop');
      const text = await terminalText(cp.page);
      assert.equal(count(text, 'before-the-drop'), 1, text);
      assert.equal(count(text, 'while-away'), 1, text);
      assert.equal(count(text, 'Welcome to VirtualOS'), 1, text);
      assert.deepEqual(
        cp.errors.filter((e) => !/WebSocket|ERR_CONNECTION|Failed to fetch/.test(e)),
        [],
      );
      await saveScreenshot(cp.page, 'reconnected');
    } finally {
      await relay.close();
    }
  });

  it('sends the lease holder’s keystrokes to the DUT, and never a viewer’s', async () => {
    const viewer = await openConsole('viewer');
    const operator = await openConsole('operator');
    assert.equal(await mode(operator), 'read-only');
    const received: Buffer[] = [];
    const onRx = (b: Buffer) => received.push(b);
    v.dut('vdut-a').events.on('rx', onRx);
    try {
      await v.t.client('operator').withLease({ dut: 'vdut-a' }, async () => {
        await operator.page.locator('#mode', { hasText: 'read-write' }).waitFor();
        await operator.page.click('#terminal');
        await operator.page.keyboard.type('root');
        await operator.page.keyboard.press('Enter');
        await waitForTerminal(operator.page, 'Password:');
        await operator.page.keyboard.type('secret');
        await operator.page.keyboard.press('Enter');
        await waitForTerminal(operator.page, 'root@vdut-a:~#');

        // The viewer types too; its page sends nothing, and the agent would drop it anyway.
        assert.equal(await mode(viewer), 'read-only');
        await viewer.page.click('#terminal');
        await viewer.page.keyboard.type('reboot');
        await viewer.page.keyboard.press('Enter');
        // Had any of it reached the shell, this line would not run as typed.
        await operator.page.keyboard.type('echo typed-in-a-browser');
        await operator.page.keyboard.press('Enter');
        await waitForTerminal(operator.page, 'root@vdut-a:~# echo typed-in-a-browser');
        await waitForTerminal(viewer.page, 'typed-in-a-browser');
        const shown = await terminalText(operator.page);
        assert.equal(count(shown, 'typed-in-a-browser'), 2, shown);
        assert.doesNotMatch(shown, /reboot|not found/);
        await saveScreenshot(operator.page, 'lease-holder-typing');
        await saveScreenshot(viewer.page, 'viewer-read-only');
      });
      // The lease is over: the holder's page turns read-only by itself.
      await operator.page.locator('#mode', { hasText: 'read-only' }).waitFor();
    } finally {
      v.dut('vdut-a').events.off('rx', onRx);
    }
    assert.doesNotMatch(Buffer.concat(received).toString('latin1'), /reboot/);
  });
});
