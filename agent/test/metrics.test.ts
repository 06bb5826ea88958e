/**
 * Metrics and health over real boundaries: Prometheus scrapes a real agent over HTTP while jobs
 * run, a virtual DUT boots and is flashed, leases come and go and calls fail; the standard gRPC
 * health service follows each DUT's health; the queue worker's listener reports the queue of an
 * embedded database.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { pino } from 'pino';
import { serveQueueMetrics } from '../../client/src/queue/queue-metrics.js';
import { QueueStore } from '../../client/src/queue/queue-store.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { startTestAgent } from '../../fixtures/test-support/test-agent.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { readServerTls, startAgent } from '../src/agent.js';

const MiB = 1024 * 1024;
const DUT = 'vdut-a';

/** One sample of a scrape: `name{labels} value`; undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(port: number, path = '/metrics'): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`);
}

/** Scrapes until `predicate` holds (a bounded re-check, not a sleep); returns that scrape. */
async function scrapeUntil(
  port: number,
  what: string,
  predicate: (text: string) => boolean,
): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = await (await scrape(port)).text();
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last scrape:\n${text}`);
  }
}

describe('metrics and health', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  let port: number;
  let dir: string;
  let image: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-metrics-'));
    image = (await buildImage({ out: join(dir, 'os.img'), version: '6.0.0', sizeBytes: 4 * MiB })).path;
    v = await startVirtualJig([{ name: DUT, storageBytes: 8 * MiB }], { metricsListen: '127.0.0.1:0' });
    port = v.t.agent.metricsPort!;
  });
  after(async () => {
    await v?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves GET /metrics in the text format, with process metrics, and 404 for anything else', async () => {
    const res = await scrape(port);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.ok(sample(text, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics');
    assert.equal(sample(text, 'jiglet_jobs', { state: 'running' }), 1, 'the serial capture runs');
    assert.equal(sample(text, 'jiglet_dut_health', { dut: DUT, state: 'good' }), 1);
    assert.equal(sample(text, 'jiglet_dut_health', { dut: DUT, state: 'bad' }), 0);
    assert.equal((await scrape(port, '/')).status, 404);
    assert.equal((await scrape(port, '/metrics/x')).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status, 404);
  });

  it('counts jobs by state, their output while they run, their followers and their durations', async () => {
    const op = v.t.client('operator');
    const before = await (await scrape(port)).text();
    const output0 = sample(before, 'jiglet_job_output_bytes_total')!;
    const exited0 = sample(before, 'jiglet_job_duration_seconds_count', { state: 'exited' }) ?? 0;
    const job = await op.start({ command: 'sh', args: ['-c', 'printf 0123456789; cat'], stdin: true });
    const running = await scrapeUntil(
      port,
      'the running job and its 10 bytes',
      (text) => sample(text, 'jiglet_job_output_bytes_total')! >= output0 + 10,
    );
    assert.equal(sample(running, 'jiglet_jobs', { state: 'running' }), 2);

    const follow = new AbortController();
    const stream = op.output(job.id, { follow: true, signal: follow.signal });
    await stream.next();
    await scrapeUntil(port, 'one follower', (text) => sample(text, 'jiglet_followers') === 1);

    await op.stdin(job.id).close();
    for await (const event of stream) if (event.type === 'finished') break;
    follow.abort();
    const done = await scrapeUntil(
      port,
      'the job to be counted as ended',
      (text) =>
        sample(text, 'jiglet_job_duration_seconds_count', { state: 'exited' }) === exited0 + 1 &&
        sample(text, 'jiglet_followers') === 0,
    );
    assert.equal(sample(done, 'jiglet_jobs', { state: 'running' }), 1);
    assert.ok(sample(done, 'jiglet_jobs', { state: 'exited' })! >= 1);
    assert.ok(sample(done, 'jiglet_job_output_bytes_total')! >= output0 + 10, 'an ended job keeps its bytes');
  });

  it('counts serial bytes of a DUT that boots', async () => {
    const op = v.t.client('operator');
    const bytes = (text: string): number => sample(text, 'jiglet_serial_bytes_total', { dut: DUT })!;
    const before = bytes(await (await scrape(port)).text());
    // Unflashed, the DUT prints its boot log and halts: bytes all the same.
    await op.jig.power(DUT, 'on');
    await scrapeUntil(port, 'serial bytes to grow', (text) => bytes(text) > before);
    await op.jig.power(DUT, 'off');
  });

  it('shows leases held and claims waiting', async () => {
    const op = v.t.client('operator');
    const admin = v.t.client('admin');
    const lease = await op.leases.claim({ dut: DUT, ttlMs: 60_000 });
    let text = await (await scrape(port)).text();
    assert.equal(sample(text, 'jiglet_leases_held', { dut: DUT }), 1);
    assert.equal(sample(text, 'jiglet_lease_claims_waiting', { dut: DUT }), 0);
    const waiting = admin.leases.claim({ dut: DUT, ttlMs: 60_000, waitMs: 30_000 });
    await scrapeUntil(
      port,
      'a waiting claim',
      (t) => sample(t, 'jiglet_lease_claims_waiting', { dut: DUT }) === 1,
    );
    await op.leases.release(lease.id);
    const second = await waiting;
    text = await (await scrape(port)).text();
    assert.equal(sample(text, 'jiglet_lease_claims_waiting', { dut: DUT }), 0);
    assert.equal(sample(text, 'jiglet_leases_held', { dut: DUT }), 1);
    await admin.leases.release(second.id);
    text = await (await scrape(port)).text();
    assert.equal(sample(text, 'jiglet_leases_held', { dut: DUT }), 0);
  });

  it('counts RPC errors by method and status name, refusals of the auth interceptor included', async () => {
    const claim = { method: '/jiglet.v1.LeaseService/Claim', code: 'INVALID_ARGUMENT' };
    const start = { method: '/jiglet.v1.JobService/StartJob', code: 'PERMISSION_DENIED' };
    const before = await (await scrape(port)).text();
    const err = await errorOf(v.t.client('operator').leases.claim({ dut: DUT, ttlMs: 10 }));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    const denied = await errorOf(v.t.client('viewer').start({ command: 'true' }));
    assert.equal(denied.code, 'JIGLET_E_PERMISSION_DENIED');
    const after = await (await scrape(port)).text();
    assert.equal(
      sample(after, 'jiglet_rpc_errors_total', claim),
      (sample(before, 'jiglet_rpc_errors_total', claim) ?? 0) + 1,
    );
    assert.equal(
      sample(after, 'jiglet_rpc_errors_total', start),
      (sample(before, 'jiglet_rpc_errors_total', start) ?? 0) + 1,
    );
  });

  it('measures a completed flash', async () => {
    await v.t.client('operator').flash(DUT, image);
    const text = await scrapeUntil(
      port,
      'the flash to be measured',
      (t) => sample(t, 'jiglet_flash_bytes_total', { dut: DUT }) === 4 * MiB,
    );
    assert.ok(sample(text, 'jiglet_flash_bytes_per_second', { dut: DUT })! > 0);
  });

  it('answers grpc.health.v1 for each DUT: NOT_SERVING while bad or in maintenance', async () => {
    let node: unknown = loadPackageDefinition(loadSync(healthProto, { keepCase: true, enums: String }));
    for (const p of ['grpc', 'health', 'v1', 'Health']) node = (node as GrpcObject)[p];
    const s = v.t.pki.as('viewer', v.t.address);
    const health = new (node as ServiceClientConstructor)(
      v.t.address,
      credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert)),
    );
    const check = (service: string): Promise<string> =>
      new Promise((resolve, reject) =>
        health.Check!({ service }, (err: Error | null, r: { status: string }) =>
          err ? reject(err) : resolve(r.status),
        ),
      );
    const admin = v.t.client('admin');
    try {
      assert.equal(await check(`jiglet.dut.${DUT}`), 'SERVING');
      await admin.jig.setState(DUT, 'bad', 'metrics test');
      assert.equal(await check(`jiglet.dut.${DUT}`), 'NOT_SERVING');
      assert.equal(await check(''), 'SERVING', 'the agent itself still serves');
      const text = await (await scrape(port)).text();
      assert.equal(sample(text, 'jiglet_dut_health', { dut: DUT, state: 'bad' }), 1);
      assert.equal(sample(text, 'jiglet_dut_health', { dut: DUT, state: 'good' }), 0);
      await admin.jig.setState(DUT, 'maintenance', 'metrics test');
      assert.equal(await check(`jiglet.dut.${DUT}`), 'NOT_SERVING');
      await admin.jig.setState(DUT, 'good');
      assert.equal(await check(`jiglet.dut.${DUT}`), 'SERVING');
    } finally {
      health.close();
    }
  });

  it('refuses to start on a metrics port in use, undoing its start, and closes its listener when it stops', async () => {
    const other = await startTestAgent({ metricsListen: '127.0.0.1:0' });
    const taken = other.agent.metricsPort!;
    const stateDir = mkdtempSync(join(dir, 'state-'));
    const opts = {
      listen: '127.0.0.1:0',
      stateDir,
      tls: readServerTls(other.pki.jigDir),
      log: pino({ level: 'silent' }),
    };
    try {
      await assert.rejects(
        startAgent({ ...opts, metricsListen: `127.0.0.1:${taken}` }),
        /cannot listen for metrics on 127\.0\.0\.1:\d+: the port is in use/,
      );
      // The failed start gave its state directory back.
      await (await startAgent(opts)).stop(1000);
    } finally {
      await other.stop();
    }
    await assert.rejects(scrape(taken), /fetch failed/);
  });

  it('serves the queue depth from the queue database (embedded engine)', async () => {
    const store = await QueueStore.open('pglite:memory');
    const lines: string[] = [];
    const server = await serveQueueMetrics('127.0.0.1:0', store, (line) => lines.push(line));
    try {
      const spec = { command: ['make', 'test'], timeoutMs: 60_000 };
      await store.submit({ ...spec, labels: { 'device-type': 'virtual' } });
      await store.submit({ ...spec, labels: { 'device-type': 'virtual' } });
      await store.submit({ ...spec, labels: { board: 'rpi4', usb: '3' } });
      const res = await scrape(server.port);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.equal(sample(text, 'jiglet_queue_jobs', { state: 'queued' }), 3);
      assert.equal(sample(text, 'jiglet_queue_jobs', { state: 'running' }), 0);
      assert.equal(sample(text, 'jiglet_queue_depth', { labels: 'device-type=virtual' }), 2);
      assert.equal(sample(text, 'jiglet_queue_depth', { labels: 'board=rpi4,usb=3' }), 1);
      assert.equal((await scrape(server.port, '/')).status, 404);
      assert.deepEqual(lines, []);
    } finally {
      await server.close();
      await store.close();
    }
  });
});
