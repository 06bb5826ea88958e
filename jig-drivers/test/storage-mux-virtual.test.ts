/**
 * The `virtual` mux driver against a fake device serving `/mux` the way the virtual DUT does (the
 * virtual DUT itself is driven with this driver in fixtures/virtual-dut/virtual-storage.test.ts).
 */
import assert from 'node:assert/strict';
import { JigletError } from '../../protocol/src/errors.js';
import { builtinStorageMuxRegistry } from '../src/storage-mux-registry.js';
import { type Answer, type HttpDevice, startHttpDevice } from './helpers/http-device.js';

/** A `/mux` endpoint; `lie` makes it report `dut` whatever it was asked. */
function muxDevice(options: { lie?: boolean } = {}): { answer: (url: URL) => Answer; side: () => string } {
  let side = 'dut';
  return {
    side: () => side,
    answer: (url) => {
      if (url.pathname !== '/mux') return { status: 404, body: 'Not Found' };
      const to = url.searchParams.get('to');
      if (to === 'host' || to === 'dut') side = options.lie ? 'dut' : to;
      else if (to !== null) return { status: 400, body: { error: `bad side ${to}` } };
      return { body: { side } };
    },
  };
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof JigletError, `expected a JigletError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('virtual storage mux driver', () => {
  const registry = builtinStorageMuxRegistry();
  let device: HttpDevice | undefined;
  afterEach(async () => {
    await device?.close();
    device = undefined;
  });

  it('switches with GET /mux?to=host|dut and reads back with GET /mux', async () => {
    const fake = muxDevice();
    device = await startHttpDevice(fake.answer);
    const mux = registry.create({ driver: 'virtual', url: device.url }, { dutName: 'vdut-1' });
    assert.equal(await mux.status(), 'dut');
    await mux.toHost();
    assert.equal(fake.side(), 'host');
    assert.equal(await mux.status(), 'host');
    await mux.toDut();
    assert.deepEqual(device.requests, ['/mux', '/mux?to=host', '/mux', '/mux?to=dut']);
  });

  it('keeps a path prefix of the configured URL', async () => {
    device = await startHttpDevice((url) =>
      url.pathname === '/vdut/mux' ? { body: { side: 'host' } } : { status: 404, body: 'Not Found' },
    );
    const mux = registry.create({ driver: 'virtual', url: `${device.url}/vdut` }, { dutName: 'vdut-1' });
    assert.equal(await mux.status(), 'host');
  });

  it('fails when the device reports another side than the one asked for', async () => {
    device = await startHttpDevice(muxDevice({ lie: true }).answer);
    const mux = registry.create({ driver: 'virtual', url: device.url }, { dutName: 'vdut-1' });
    await rejectsWith(
      mux.toHost(),
      'JIGLET_E_UNAVAILABLE',
      /^virtual storage mux of vdut-1: asked for host, device reports dut$/,
    );
  });

  it('refuses an answer without a side, and reports an HTTP error with its body', async () => {
    device = await startHttpDevice((url) =>
      url.search === ''
        ? { body: { POWER: 'ON' } }
        : { status: 404, body: { error: 'no storage on this DUT' } },
    );
    const mux = registry.create({ driver: 'virtual', url: device.url }, { dutName: 'vdut-1' });
    await rejectsWith(
      mux.status(),
      'JIGLET_E_UNAVAILABLE',
      /GET .*\/mux: expected \{"side":"host"\|"dut"\}, got \{"POWER":"ON"\}$/,
    );
    await rejectsWith(mux.toDut(), 'JIGLET_E_UNAVAILABLE', /HTTP 404: \{"error":"no storage on this DUT"\}$/);
  });

  it('gives up on a device that never answers, at its deadline', async () => {
    device = await startHttpDevice(() => 'hang');
    const mux = registry.create(
      { driver: 'virtual', url: device.url, timeoutMs: 200 },
      { dutName: 'vdut-1' },
    );
    await rejectsWith(mux.toHost(), 'JIGLET_E_DEADLINE_EXCEEDED', /no answer within 200 ms/);
  });
});
