/**
 * A CI pipeline end to end, as the README's "In a CI pipeline" script runs it: submit to the fleet
 * queue and wait, the worker flashes the virtual DUT and runs the test script as an agent job,
 * which drives its DUT with plain `jigctl` (power cycle, expect, exec) through the agent's local
 * endpoint with no certificate, and writes JUnit XML. The pipeline then has the verdict as its exit
 * code, the cases as JUnit for the CI system, and the run report, checked here in chromium.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { buildImage } from '../fixtures/images/build-image.js';
import { launchChromium } from '../fixtures/test-support/browser.js';
import { freshPgliteDir } from '../fixtures/test-support/pglite-template.js';
import {
  type QueueWorkerProcess,
  startQueueWorkerProcess,
} from '../fixtures/test-support/queue-worker-process.js';
import { JIGCTL, runJigctl } from '../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../fixtures/test-support/virtual-jig.js';
import { parseJunit, type TestCase } from '../protocol/src/test-cases.js';

const MiB = 1024 * 1024;
const CI = join(import.meta.dirname, '../fixtures/ci');
const ARTIFACTS = join(import.meta.dirname, '../test-artifacts/ci-pipeline');

/** The part of the DOM the page-side callbacks use (this project compiles without lib.dom). */
interface PageElement {
  scrollTop: number;
}
declare const document: { getElementById(id: string): PageElement | null };
declare function getComputedStyle(el: PageElement): { fill: string };

describe('a CI pipeline through the fleet queue: flash, test on the DUT, verdict, JUnit, report', function () {
  this.timeout(180_000);
  let v: VirtualJig;
  let dir: string;
  let db: string;
  let worker: QueueWorkerProcess | undefined;
  let browser: Browser | undefined;
  let image: string;
  let bin: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-ci-pipeline-'));
    v = await startVirtualJig([{ name: 'vdut-a', storageBytes: 32 * MiB }]);
    db = `pglite:${await freshPgliteDir(join(dir, 'queue'))}`;
    worker = await startQueueWorkerProcess(db, v.t.pki.as('operator', v.t.address));
    image = (await buildImage({ out: join(dir, 'os-4.2.0.img'), version: '4.2.0', sizeBytes: 16 * MiB }))
      .path;
    // `jigctl` by name, as on a CI runner that installed it.
    bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'jigctl'), `#!/bin/sh\nexec "${process.execPath}" "${JIGCTL}" "$@"\n`, {
      mode: 0o755,
    });
  });
  after(async () => {
    await browser?.close();
    await worker?.stop();
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is the script the README shows', () => {
    const readme = readFileSync(join(import.meta.dirname, '../README.md'), 'utf8');
    const script = readFileSync(join(CI, 'pipeline.sh'), 'utf8');
    const shown = script.replace(/^(?=.)/gm, '  ');
    assert.ok(readme.includes(shown), 'README.md (In a CI pipeline) shows fixtures/ci/pipeline.sh as it is');
  });

  it('calls a flashed image that never boots an infra-error at boot, and never runs the tests', async () => {
    const broken = (
      await buildImage({
        out: join(dir, 'os-4.2.1.img'),
        version: '4.2.1',
        sizeBytes: 16 * MiB,
        corrupt: true,
      })
    ).path;
    const ran = join(dir, 'ran');
    // The boot wait is bounded by the job's timeout: a short one ends it soon after the panic.
    const run = await runJigctl(
      v.t,
      [
        'queue',
        'submit',
        '--labels',
        'device-type=virtual',
        '--image',
        broken,
        '--max-attempts',
        '1',
        '--timeout',
        '10s',
        '--wait',
        '--',
        'touch',
        ran,
      ],
      { env: { USER: 'ci', JIGLET_QUEUE_DB: db } },
    );
    assert.equal(run.code, 75, `infra-error exits 75; ${run.stderr}`);
    assert.match(
      run.stderr,
      /job \d+: infra-error at boot: booting the DUT failed: .*did not print a line matching/,
    );
    assert.match(run.stdout, /power cycle/);
    assert.ok(!existsSync(ran), 'the test command never ran');
  });

  it('ends fail with the failing case named, stores the cases, and reports them', async () => {
    const out = join(dir, 'artifacts');
    // The CI runner is not the jig host's job: it has the queue, not the agent's certificate.
    const child = spawn('sh', [join(CI, 'pipeline.sh'), image, join(CI, 'dut-tests.sh'), out], {
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        USER: 'ci',
        JIGLET_QUEUE_DB: db,
        JIGLET_CONFIG: '/nonexistent',
        TEST_ENV: 'WIFI=required',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    const [code] = (await once(child, 'close')) as [number | null];
    const said = `stdout:\n${stdout}\nstderr:\n${stderr}`;

    // The job drove its DUT itself: a power cycle, the login prompt, a command on its shell.
    assert.match(stdout, /dut-tests: boots to a login prompt after a power cycle: pass/, said);
    assert.match(stdout, /dut-tests: reports its release in os-release: pass/, said);
    assert.match(stdout, /dut-tests: has the wifi firmware: fail/, said);
    assert.doesNotMatch(stdout + stderr, /certificate/, 'no certificate was needed inside the job');
    assert.equal(code, 1, `the pipeline exits with the test script's code; ${said}`);
    assert.match(
      stderr,
      /job \d+: fail at command: sh exited 1; 1 of 3 test cases failed: has the wifi firmware/,
      said,
    );

    const expected: Pick<TestCase, 'name' | 'status'>[] = [
      { name: 'boots to a login prompt after a power cycle', status: 'passed' },
      { name: 'reports its release in os-release', status: 'passed' },
      { name: 'has the wifi firmware', status: 'failed' },
    ];
    const junit = parseJunit(readFileSync(join(out, 'junit.xml'), 'utf8'), 'junit.xml');
    assert.deepEqual(
      junit.map((c) => ({ name: c.name, status: c.status })),
      expected,
    );
    assert.equal(junit[2]!.message, '/lib/firmware/wifi.bin is missing');
    assert.equal(junit[0]!.suite, 'on vdut-a');

    const id = readFileSync(join(out, 'job-id'), 'utf8').trim();
    const env = { USER: 'ci', JIGLET_QUEUE_DB: db };
    const results = await runJigctl(v.t, ['queue', 'results', id, '-o', 'json'], { env });
    assert.equal(results.code, 0, results.stderr);
    const stored = JSON.parse(results.stdout) as { cases: TestCase[] } | TestCase[];
    const cases = Array.isArray(stored) ? stored : stored.cases;
    assert.deepEqual(
      cases.map((c) => ({ name: c.name, status: c.status })),
      expected,
    );
    const status = await runJigctl(v.t, ['queue', 'status', id], { env });
    assert.match(status.stdout, /fail/, status.stdout);

    browser = await launchChromium(join(v.t.pki.jigDir, 'server.crt'));
    const context = await browser.newContext({ offline: true, viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(`file://${join(out, 'report.html')}`);
    const verdict = page.locator('#verdict');
    assert.equal(await verdict.getAttribute('data-verdict'), 'fail');
    assert.match(
      (await verdict.textContent()) ?? '',
      /FAIL.*1 of 3 test cases failed: has the wifi firmware/,
    );
    const spans = page.locator('#timeline [data-kind="testcase"]');
    assert.equal(await spans.count(), 3, 'each test case is a span on the timeline');
    const failed = page.locator('#timeline [data-kind="testcase"][data-status="failed"]');
    assert.equal(
      await failed.evaluate((el) => getComputedStyle(el as unknown as PageElement).fill),
      'rgb(209, 69, 59)',
      'the failed case is red',
    );
    const labels = await page.locator('#timeline text.lbl').allTextContents();
    assert.ok(
      labels.some((l) => l.startsWith('flash os-4.2.0.img')),
      `the flash is named: ${JSON.stringify(labels)}`,
    );
    assert.ok(
      labels.filter((l) => l === 'power cycle' || l === 'power on').length >= 2,
      `the worker's and the script's power actions: ${JSON.stringify(labels)}`,
    );
    // Clicking the failed case scrolls the serial log to its time (from the top of the log).
    await failed.click();
    assert.ok(
      (await page.evaluate(() => document.getElementById('serial')!.scrollTop)) > 0,
      'the serial log scrolled to the failed case',
    );
    assert.deepEqual(problems, []);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await context.close();
  });
});
