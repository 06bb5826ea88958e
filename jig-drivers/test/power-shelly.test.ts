import assert from 'node:assert/strict';
import { builtinPowerRegistry } from '../src/power-registry.js';
import { type Answer, type HttpDevice, startHttpDevice } from './helpers/http-device.js';

/** Shelly Gen1 REST: `/relay/<n>[?turn=on|off]` → `{"ison":…,"has_timer":false,…}`. */
function gen1(channels: number): { answer: (url: URL) => Answer; state: boolean[] } {
  const state = new Array<boolean>(channels).fill(false);
  const answer = (url: URL): Answer => {
    const match = /^\/relay\/(\d+)$/.exec(url.pathname);
    const id = Number(match?.[1]);
    if (!match || id >= channels) return { status: 404, body: 'Not Found' };
    const turn = url.searchParams.get('turn');
    if (turn !== null) state[id] = turn === 'on';
    return {
      body: { ison: state[id], has_timer: false, timer_started: 0, timer_duration: 0, source: 'http' },
    };
  };
  return { answer, state };
}

/** Shelly Gen2 RPC over GET: Switch.Set → `{"was_on":…}`, Switch.GetStatus → `{"id":n,"output":…}`, errors as JSON-RPC. */
function gen2(channels: number): { answer: (url: URL) => Answer; state: boolean[] } {
  const state = new Array<boolean>(channels).fill(false);
  const answer = (url: URL): Answer => {
    const id = Number(url.searchParams.get('id'));
    if (id >= channels)
      return { status: 500, body: { code: -105, message: `Argument 'id', value ${id} not found!` } };
    if (url.pathname === '/rpc/Switch.Set') {
      const was = state[id];
      state[id] = url.searchParams.get('on') === 'true';
      return { body: { was_on: was } };
    }
    if (url.pathname === '/rpc/Switch.GetStatus') {
      return {
        body: { id, source: 'http', output: state[id], apower: 0, voltage: 231.2, temperature: { tC: 41.2 } },
      };
    }
    return { status: 404, body: { code: 404, message: `No handler for ${url.pathname.slice(5)}` } };
  };
  return { answer, state };
}

describe('shelly power driver', () => {
  const registry = builtinPowerRegistry();
  let device: HttpDevice | undefined;
  afterEach(async () => {
    await device?.close();
    device = undefined;
  });

  it('Gen1: turns channel 1 on and off through /relay/1 and reads ison', async () => {
    const shelly = gen1(2);
    device = await startHttpDevice(shelly.answer);
    const power = registry.create(
      { driver: 'shelly', gen: 1, url: device.url, channel: 1 },
      { dutName: 'bbb-1' },
    );
    await power.on();
    assert.deepEqual(shelly.state, [false, true]);
    assert.equal(await power.status(), 'on');
    await power.off();
    assert.equal(await power.status(), 'off');
    assert.deepEqual(device.requests, ['/relay/1?turn=on', '/relay/1', '/relay/1?turn=off', '/relay/1']);
  });

  it('Gen2: uses Switch.Set and Switch.GetStatus on channel 0 by default, and cycles off then on', async () => {
    const shelly = gen2(1);
    device = await startHttpDevice(shelly.answer);
    const power = registry.create(
      { driver: 'shelly', gen: 2, url: device.url, offTimeMs: 0 },
      { dutName: 'bbb-1' },
    );
    await power.cycle();
    assert.equal(await power.status(), 'on');
    assert.deepEqual(device.requests, [
      '/rpc/Switch.Set?id=0&on=false',
      '/rpc/Switch.Set?id=0&on=true',
      '/rpc/Switch.GetStatus?id=0',
    ]);
  });

  it('Gen2: reports an RPC error with its body', async () => {
    device = await startHttpDevice(gen2(1).answer);
    const power = registry.create(
      { driver: 'shelly', gen: 2, url: device.url, channel: 3 },
      { dutName: 'bbb-1' },
    );
    await assert.rejects(power.on(), {
      code: 'JIGLET_E_UNAVAILABLE',
      message:
        /shelly gen2 power switch of bbb-1 GET .*\/rpc\/Switch.Set\?id=3&on=true: HTTP 500: \{"code":-105,"message":"Argument 'id', value 3 not found!"\}/,
    });
  });

  it('pointed at the wrong generation, says what it expected and got', async () => {
    device = await startHttpDevice(gen2(1).answer);
    const power = registry.create({ driver: 'shelly', gen: 1, url: device.url }, { dutName: 'bbb-1' });
    await assert.rejects(power.status(), { code: 'JIGLET_E_UNAVAILABLE', message: /HTTP 404/ });
  });

  it('rejects an answer without the expected boolean', async () => {
    device = await startHttpDevice(() => ({ body: { ison: 'yes' } }));
    const power = registry.create({ driver: 'shelly', gen: 1, url: device.url }, { dutName: 'bbb-1' });
    await assert.rejects(power.on(), {
      code: 'JIGLET_E_UNAVAILABLE',
      message: /expected \{"ison":true\|false,…\}, got \{"ison":"yes"\}/,
    });
  });

  it('Gen1: a relay that does not follow the command is an error', async () => {
    device = await startHttpDevice(() => ({ body: { ison: false } }));
    const power = registry.create({ driver: 'shelly', gen: 1, url: device.url }, { dutName: 'bbb-1' });
    await assert.rejects(power.on(), { code: 'JIGLET_E_UNAVAILABLE', message: /relay 0 did not switch on/ });
  });

  it('times out on a device that never answers', async () => {
    device = await startHttpDevice(() => 'hang');
    const power = registry.create(
      { driver: 'shelly', gen: 2, url: device.url, timeoutMs: 150 },
      { dutName: 'bbb-1' },
    );
    await assert.rejects(power.status(), {
      code: 'JIGLET_E_DEADLINE_EXCEEDED',
      message: /no answer within 150 ms/,
    });
  });

  it('requires the generation in the config', () => {
    const checked = registry.check({ driver: 'shelly', url: 'http://10.0.0.9' });
    assert.deepEqual(checked, {
      ok: false,
      problems: ['power.gen: expected 1 (Gen1 REST API) or 2 (Gen2+ RPC API)'],
    });
  });
});
