/**
 * `jigctl report` and `jigctl queue report` as CI uses them: one self-contained HTML file per
 * lease, job or queued attempt, with the SVG lanes and the serial log, that loads nothing from
 * anywhere and shows serial output (untrusted) as text, never as markup.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../../fixtures/images/build-image.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { freshPgliteDir } from '../../fixtures/test-support/pglite-template.js';
import {
  type QueueWorkerProcess,
  startQueueWorkerProcess,
} from '../../fixtures/test-support/queue-worker-process.js';
import { assertOneLineError, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

const MiB = 1024 * 1024;
const EVIL = '<script>alert("pwned")</script><img src=x onerror=alert(1)>';
const KINDS = ['power', 'flash', 'job', 'expect', 'lease', 'serial'];

/** The CSP's hash for an inline block, as the page states it. */
function cspHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** Everything a self-contained, injection-proof report must be. */
function assertSelfContained(html: string): void {
  assert.match(html, /^<!DOCTYPE html>/);
  // A URL may appear as text (a job's command line names its power switch's address), never as
  // something the page loads or links to.
  // Text is escaped, so every '<' left in the page opens one of the page's own tags.
  for (const [tag] of html.matchAll(/<[a-z][^>]*>/gi)) {
    assert.doesNotMatch(tag, /\s(src|href|xlink:href|action|srcset|poster)=|=\s*"?\s*https?:/i, tag);
  }
  assert.doesNotMatch(html, /url\(|@import/, 'the stylesheet loads nothing');
  const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
  assert.ok(csp, 'a Content-Security-Policy');
  const policy = csp.replace(/&#39;/g, "'");
  assert.match(policy, /default-src 'none'/);
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1, 'only the page’s own script');
  assert.ok(policy.includes(`script-src ${cspHash(scripts[0]![1]!)}`), 'the script is allowed by its hash');
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
  assert.ok(policy.includes(`style-src ${cspHash(style)}`), 'the stylesheet is allowed by its hash');
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
}

describe('jigctl report', function () {
  this.timeout(120_000);
  let v: VirtualJig;
  let dir: string;
  let leaseId: string;
  let jobId: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-report-'));
    v = await startVirtualJig([{ name: 'vdut-a', storageBytes: 32 * MiB }]);
    const image = (await buildImage({ out: join(dir, 'os.img'), version: '6.0.0', sizeBytes: 16 * MiB }))
      .path;
    const op = v.t.client('operator');
    const lease = await op.leases.claim({ dut: 'vdut-a', ttlMs: 60_000 });
    leaseId = lease.id;
    op.lease = lease.id;
    await op.flash('vdut-a', image);
    const on = await op.jig.power('vdut-a', 'on');
    await op.jig.expect('vdut-a', 'login: $', { offset: on.serialOffset, timeoutMs: 10_000 });
    // Untrusted bytes from the DUT: what a hostile or broken firmware could print.
    v.dut('vdut-a').inject(Buffer.from(`${EVIL}\r\n`));
    await op.jig.expect('vdut-a', 'pwned', { offset: on.serialOffset, timeoutMs: 10_000 });
    const job = await op.start({ command: 'sh', args: ['-c', 'echo testing; exit 0'], dut: 'vdut-a' });
    jobId = job.id;
    await collect(op, job.id, { follow: true });
    await op.leases.release(lease.id);
  });
  after(async () => {
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one self-contained file with every lane and the serial text escaped', async () => {
    const file = join(dir, 'run.html');
    const r = await runJigctl(v.t, ['report', '--lease', leaseId, '-o', file], { as: 'viewer' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), file);
    const html = readFileSync(file, 'utf8');
    assertSelfContained(html);
    assert.match(html, /<svg id="timeline"/);
    for (const kind of KINDS) assert.match(html, new RegExp(`data-kind="${kind}"`), `no ${kind} element`);
    assert.match(html, /<polyline[^>]*class="flash-curve"/, 'the flash throughput curve');
    assert.match(html, /class="power p-on"/);
    assert.match(html, /class="job o-succeeded"/);
    assert.match(html, /Booting VirtualOS 6\.0\.0 from disk/);
    // The injected markup is there, as text.
    assert.ok(
      html.includes(
        '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;',
      ),
    );
    assert.ok(!html.includes('<img'), 'no injected element');
    assert.equal(existsSync(`${file}.${process.pid}.tmp`), false);
  });

  it('reports a job, writes to stdout with -o -, and refuses what it cannot report', async () => {
    const file = join(dir, 'job.html');
    const byJob = await runJigctl(v.t, ['report', '--job', jobId, '-o', file]);
    assert.equal(byJob.code, 0, byJob.stderr);
    const html = readFileSync(file, 'utf8');
    assertSelfContained(html);
    assert.match(html, new RegExp(`data-job="${jobId}"`));

    const out = await runJigctl(v.t, ['report', '--lease', leaseId, '--no-serial', '-o', '-']);
    assert.equal(out.code, 0, out.stderr);
    assertSelfContained(out.stdout);
    assert.doesNotMatch(out.stdout, /class="sl"/, '--no-serial leaves the serial log out');

    const none = await runJigctl(v.t, ['report']);
    assert.equal(none.code, 2);
    assertOneLineError(none);
    const both = await runJigctl(v.t, ['report', '--lease', leaseId, '--job', jobId]);
    assert.equal(both.code, 2);
    const unknown = await runJigctl(v.t, ['report', '--lease', 'nope', '-o', join(dir, 'x.html')]);
    assert.equal(unknown.code, 2);
    assertOneLineError(unknown);
    assert.match(unknown.stderr, /no lease nope/);
    assert.equal(existsSync(join(dir, 'x.html')), false);
  });

  describe('jigctl queue report', () => {
    let worker: QueueWorkerProcess | undefined;
    let db: string;
    before(async () => {
      db = `pglite:${await freshPgliteDir(join(dir, 'queue'))}`;
      worker = await startQueueWorkerProcess(db, v.t.pki.as('operator', v.t.address), [
        '--name',
        'report-host',
      ]);
    });
    after(async () => {
      await worker?.stop();
    });

    it('stores a report per attempt that jigctl queue report writes out', async () => {
      const submitted = await runJigctl(v.t, [
        'queue',
        'submit',
        '--db',
        db,
        '--labels',
        'device-type=virtual',
        '--',
        'sh',
        '-c',
        'echo "queued run on $JIGLET_DUT"',
      ]);
      assert.equal(submitted.code, 0, submitted.stderr);
      const id = submitted.stdout.trim();
      const logs = await runJigctl(v.t, ['queue', 'logs', id, '-f', '--db', db]);
      assert.equal(logs.code, 0, logs.stderr);
      assert.doesNotMatch(logs.stdout, /no run report/);

      const file = join(dir, 'queued.html');
      const r = await runJigctl(v.t, ['queue', 'report', id, '--db', db, '-o', file]);
      assert.equal(r.code, 0, r.stderr);
      const html = readFileSync(file, 'utf8');
      assertSelfContained(html);
      assert.match(html, new RegExp(`queue job ${id}, attempt 1, on vdut-a`));
      for (const kind of ['power', 'job', 'lease']) assert.match(html, new RegExp(`data-kind="${kind}"`));
      assert.match(html, /power cycle|data-state="on"/);

      const missing = await runJigctl(v.t, ['queue', 'report', id, '--attempt', '2', '--db', db, '-o', '-']);
      assert.equal(missing.code, 2);
      assertOneLineError(missing);
      assert.match(missing.stderr, /no run report for attempt 2/);
      // The queue's other commands still take -o text|json only.
      const bad = await runJigctl(v.t, ['queue', 'status', id, '--db', db, '-o', 'yaml']);
      assert.equal(bad.code, 2);
      assertOneLineError(bad);
      const json = await runJigctl(v.t, ['queue', 'status', id, '--db', db, '-o', 'json']);
      assert.equal(json.code, 0, json.stderr);
      assert.equal(JSON.parse(json.stdout).state, 'succeeded');
    });
  });
});
