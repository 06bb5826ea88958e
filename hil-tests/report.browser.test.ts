/**
 * The HTML record of a HIL run, opened in a real browser (Debian chromium) with no network: a
 * flash → boot → login run on the virtual DUT, reported with `jigctl report`, shows every kind of
 * event on its timeline, runs its script under its own strict CSP, and scrolls the serial log to
 * the moment a user clicks. Screenshots are kept as test artifacts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { buildImage } from '../fixtures/images/build-image.js';
import { launchChromium } from '../fixtures/test-support/browser.js';
import { runJigctl } from '../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../fixtures/test-support/virtual-jig.js';
import { logIn } from './support/login.js';
import type { HilTarget } from './support/target.js';

const MiB = 1024 * 1024;
const ARTIFACTS = join(import.meta.dirname, '../test-artifacts/report');
const KINDS = ['power', 'flash', 'job', 'expect', 'lease', 'serial'] as const;

/** The part of the DOM the page-side callbacks use (this project compiles without lib.dom). */
interface PageElement {
  scrollTop: number;
  classList: { contains(name: string): boolean };
  getAttribute(name: string): string | null;
}
declare const document: {
  getElementById(id: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
};

describe('the HTML report of a flash → boot → login run, in chromium', function () {
  this.timeout(120_000);
  let v: VirtualJig;
  let dir: string;
  let browser: Browser;
  let report: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-report-browser-'));
    v = await startVirtualJig([{ name: 'vdut-a', storageBytes: 32 * MiB }]);
    const image = (await buildImage({ out: join(dir, 'os.img'), version: '7.1.0', sizeBytes: 16 * MiB }))
      .path;
    const op = v.t.client('operator');
    const lease = await op.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    op.lease = lease.id;
    await op.flash('vdut-a', image);
    const on = await op.jig.power('vdut-a', 'on');
    const target: HilTarget = {
      dut: 'vdut-a',
      operator: op,
      login: {
        loginPrompt: 'login: $',
        user: 'root',
        passwordPrompt: 'Password: $',
        password: 'secret',
        shellPrompt: '[#$] $',
      },
    } as HilTarget;
    const session = await op.jig.console('vdut-a');
    try {
      await logIn(target, session, on.serialOffset);
      // Enough lines after the login that the log must scroll to reach the start.
      for (let i = 0; i < 12; i++) await session.write('cat $VROOT/etc/os-release\r');
      await op.jig.expect('vdut-a', '^VERSION_ID=7\\.1\\.0', { offset: on.serialOffset, timeoutMs: 10_000 });
    } finally {
      await session.close();
    }
    await op.jig.power('vdut-a', 'off');
    await op.leases.release(lease.id);
    op.lease = undefined;
    report = join(dir, 'run.html');
    const written = await runJigctl(v.t, ['report', '--lease', lease.id, '-o', report], { as: 'viewer' });
    assert.equal(written.code, 0, written.stderr);
    browser = await launchChromium(join(v.t.pki.jigDir, 'server.crt'));
  });
  after(async () => {
    await browser?.close();
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens offline, shows every event kind, and scrolls the serial log to a clicked moment', async () => {
    const context = await browser.newContext({ offline: true, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('request', (req) => {
      if (!req.url().startsWith('file:')) problems.push(`requested ${req.url()}`);
    });
    await page.goto(`file://${report}`);
    for (const kind of KINDS) {
      const shown = page.locator(`[data-kind="${kind}"]`);
      assert.ok((await shown.count()) > 0, `no ${kind} event in the report`);
      assert.ok(await shown.first().isVisible(), `the first ${kind} event is not visible`);
    }
    assert.match((await page.locator('#serial').textContent()) ?? '', /login:/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });

    // Clicking the last expect match on the timeline scrolls the log down to the login; clicking
    // the flash (before the boot) scrolls it back up.
    await page.locator('#timeline [data-kind="expect"]').last().click();
    const afterExpect = await page.evaluate(() => document.getElementById('serial')!.scrollTop);
    assert.ok(afterExpect > 0, 'clicking a late event scrolls the serial log down');
    assert.equal(
      await page.evaluate(() => document.getElementById('cursor')!.getAttribute('visibility')),
      'visible',
      'the clicked moment is marked on the timeline',
    );
    assert.ok(
      await page.evaluate(() => document.querySelector('#serial .here') !== null),
      'the serial line at that moment is highlighted',
    );
    // The flash's row in the events table (a curve is no target for a pointer; its row is).
    await page.locator('#events tr[data-kind="flash"]').first().click();
    const afterFlash = await page.evaluate(() => document.getElementById('serial')!.scrollTop);
    assert.ok(afterFlash < afterExpect, 'clicking an earlier event scrolls back up');
    await page.screenshot({ path: join(ARTIFACTS, 'report-clicked.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no script error, CSP violation or network request');
    await context.close();
  });
});
