/**
 * The HTML record of a HIL run, opened in a real browser (Debian chromium) with no network: a
 * flash → boot → login → test run on the virtual DUT, reported with `jigctl report`, shows every
 * kind of event on its timeline, runs its script under its own strict CSP, and scrolls the serial
 * log to the moment a user clicks. It carries the run's verdict, a legend, jobs named by what they
 * did, the test job's cases (the failed one red, a click away from its serial lines) and the end
 * of the failed job's stderr. Screenshots are kept as test artifacts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { buildImage } from '../fixtures/images/build-image.js';
import { launchChromium } from '../fixtures/test-support/browser.js';
import { collect } from '../fixtures/test-support/collect.js';
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
declare function getComputedStyle(el: PageElement): { fill: string };

/** The test job's JUnit: one case passes, one fails, back to back from the job's start. */
const JUNIT =
  '<testsuites><testsuite name="os-release">' +
  '<testcase name="reports its version" time="0.2"/>' +
  '<testcase name="names the right product" time="0.3"><failure message="PRODUCT is vdut, want rpi4"/></testcase>' +
  '</testsuite></testsuites>';

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
      // The user's test: writes its JUnit to $JIGLET_RESULTS, complains on stderr and fails.
      const test = await op.start({
        command: 'sh',
        args: [
          '-c',
          `printf '%s' '${JUNIT}' > "$JIGLET_RESULTS/junit.xml"; echo "checking PRODUCT" >&2; echo "PRODUCT is vdut, want rpi4" >&2; exit 1`,
        ],
        dut: 'vdut-a',
      });
      assert.equal((await collect(op, test.id, { follow: true })).finished?.exitCode, 1);
      // Enough lines after the login that the log must scroll to reach the start. The marker
      // comes after the last of them: the lease must not end (and the power go off) while the
      // DUT is still printing, or how many lines the record holds depends on the machine's load.
      for (let i = 0; i < 12; i++) await session.write('cat $VROOT/etc/os-release\r');
      await session.write('echo report-lines-$((6 * 7))\r');
      await op.jig.expect('vdut-a', '^VERSION_ID=7\\.1\\.0', { offset: on.serialOffset, timeoutMs: 10_000 });
      // Not anchored: typeahead puts the marker's output after a prompt. The typed line says $((6 * 7)).
      await op.jig.expect('vdut-a', 'report-lines-42', { offset: on.serialOffset, timeoutMs: 20_000 });
    } finally {
      await session.close();
    }
    await op.jig.power('vdut-a', 'off');
    await op.leases.release(lease.id);
    op.lease = undefined;
    report = join(dir, 'run.html');
    const written = await runJigctl(
      v.t,
      [
        'report',
        '--lease',
        lease.id,
        '-o',
        report,
        '--verdict',
        'fail',
        '--reason',
        '1 of 2 test cases failed',
      ],
      { as: 'viewer' },
    );
    assert.equal(written.code, 0, written.stderr);
    // For whoever chases the known open defect (a run record's serial log that stops early under
    // load, README Status): what the timeline said and what the capture log holds, side by side.
    mkdirSync(ARTIFACTS, { recursive: true });
    const timeline = await op.records.timeline({ leaseId: lease.id });
    writeFileSync(
      join(ARTIFACTS, 'timeline-serial.json'),
      JSON.stringify(
        {
          from: timeline.from,
          to: timeline.to,
          captureJobs: timeline.captureJobs,
          notes: timeline.notes,
          serialTruncated: timeline.serialTruncated,
          serial: timeline.serial.map((l) => ({
            at: l.at,
            offset: String(l.offset),
            capture: l.capture,
            text: l.text,
          })),
        },
        null,
        2,
      ),
    );
    const tail = await runJigctl(v.t, ['serial', 'tail', '--dut', 'vdut-a', '-o', 'json'], { as: 'viewer' });
    writeFileSync(join(ARTIFACTS, 'serial-tail.jsonl'), tail.stdout);
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

  it('shows the verdict, a legend, jobs by what they did, red failed cases that scroll the log, and a failed job’s stderr', async () => {
    const context = await browser.newContext({ offline: true, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    await page.goto(`file://${report}`);

    const verdict = page.locator('#verdict');
    assert.ok(await verdict.isVisible(), 'the verdict is at the top');
    assert.equal(await verdict.getAttribute('data-verdict'), 'fail');
    assert.match((await verdict.textContent()) ?? '', /FAIL\s+1 of 2 test cases failed/);

    const legend = page.locator('#legend');
    assert.ok(await legend.isVisible(), 'the legend is shown with the timeline');
    for (const entry of ['power-on', 'job-failed', 'case-failed', 'expect-ok', 'lease']) {
      assert.equal(await legend.locator(`[data-legend="${entry}"]`).count(), 1, `legend entry ${entry}`);
    }

    const labels = await page.locator('#timeline text.lbl').allTextContents();
    for (const name of ['power on', 'power off', 'flash os.img']) {
      assert.ok(labels.includes(name), `a job named "${name}" among ${JSON.stringify(labels)}`);
    }
    assert.ok(
      labels.some((l) => l.startsWith('sh -c ')),
      `the test job is named by its command: ${JSON.stringify(labels)}`,
    );
    assert.ok(!labels.some((l) => /jig-driver|node/.test(l)), 'no internal argv as a job name');

    const cases = page.locator('#timeline [data-kind="testcase"]');
    assert.equal(await cases.count(), 2);
    const failed = page.locator('#timeline [data-kind="testcase"][data-status="failed"]');
    assert.equal(
      await failed.evaluate((el) => getComputedStyle(el as unknown as PageElement).fill),
      'rgb(209, 69, 59)',
      'the failed case is red',
    );
    const passed = page.locator('#timeline [data-kind="testcase"][data-status="passed"]');
    assert.notEqual(
      await passed.evaluate((el) => getComputedStyle(el as unknown as PageElement).fill),
      'rgb(209, 69, 59)',
    );
    // From the top of the log, a click on the failed case scrolls it to the lines of that moment.
    await page.locator('#events tr[data-kind="flash"]').first().click();
    const before = await page.evaluate(() => document.getElementById('serial')!.scrollTop);
    await failed.click();
    const after = await page.evaluate(() => document.getElementById('serial')!.scrollTop);
    assert.ok(after > before, `clicking the failed case scrolls the serial log (${before} → ${after})`);
    // The line lit is the first one at or after the case began (the last line when the log
    // ends before it: cases are laid out back to back from the job's start, by their durations).
    const caseAt = Number(await failed.getAttribute('data-t'));
    const times = (await page
      .locator('#serial .sl')
      .evaluateAll((els) =>
        els.map((e) => Number((e as unknown as PageElement).getAttribute('data-t'))),
      )) as number[];
    const want = times.findIndex((t) => t >= caseAt);
    const lit = await page
      .locator('#serial .sl')
      .evaluateAll((els) => els.findIndex((e) => (e as unknown as PageElement).classList.contains('here')));
    assert.equal(lit, want === -1 ? times.length - 1 : want, 'the serial line of that moment is highlighted');

    const tail = page.locator('#failed-jobs');
    assert.match((await tail.textContent()) ?? '', /checking PRODUCT\nPRODUCT is vdut, want rpi4/);
    assert.match((await page.locator('#cases').textContent()) ?? '', /names the right product/);
    await page.screenshot({ path: join(ARTIFACTS, 'report-verdict-cases.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });
});
