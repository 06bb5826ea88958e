import assert from 'node:assert/strict';
import type { StepEvent } from '../../protocol/src/driver-events.js';
import { JigletError } from '../../protocol/src/errors.js';
import { builtinPowerRegistry } from '../src/power-registry.js';
import { type Answer, type HttpDevice, startHttpDevice } from './helpers/http-device.js';

/** Asserts a promise rejects with a JigletError of `code` whose message matches `pattern`. */
async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof JigletError, `expected a JigletError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

/**
 * Answers like Tasmota's `/cm` endpoint: `Power`, `Power On|Off`, `Power<n> …` with `{"POWER<n>":"ON"}`,
 * a 401 WARNING for a wrong password, `{"Command":"Unknown"}` for anything else.
 */
function tasmota(relays: number, password?: string): { answer: (url: URL) => Answer; state: boolean[] } {
  const state = new Array<boolean>(relays).fill(false);
  const answer = (url: URL): Answer => {
    if (url.pathname !== '/cm') return { status: 404, body: 'Not Found' };
    if (
      password !== undefined &&
      (url.searchParams.get('user') !== 'admin' || url.searchParams.get('password') !== password)
    ) {
      return { status: 401, body: { WARNING: 'Need user=<username>&password=<password>' } };
    }
    const match = /^Power(\d?)(?: (On|Off))?$/i.exec(url.searchParams.get('cmnd') ?? '');
    const index = Number(match?.[1] || '1');
    if (!match || index > relays) return { body: { Command: 'Unknown' } };
    if (match[2]) state[index - 1] = match[2].toLowerCase() === 'on';
    const key = relays === 1 ? 'POWER' : `POWER${index}`;
    return { body: { [key]: state[index - 1] ? 'ON' : 'OFF' } };
  };
  return { answer, state };
}

describe('tasmota and virtual power drivers', () => {
  const registry = builtinPowerRegistry();
  let device: HttpDevice | undefined;
  afterEach(async () => {
    await device?.close();
    device = undefined;
  });

  it('switches a single-relay plug with the documented requests and reads its state back', async () => {
    const plug = tasmota(1);
    device = await startHttpDevice(plug.answer);
    const power = registry.create({ driver: 'tasmota', url: device.url }, { dutName: 'rpi4-a' });
    await power.on();
    assert.deepEqual(plug.state, [true]);
    assert.equal(await power.status(), 'on');
    await power.off();
    assert.equal(await power.status(), 'off');
    assert.deepEqual(device.requests, [
      '/cm?cmnd=Power%20On',
      '/cm?cmnd=Power',
      '/cm?cmnd=Power%20Off',
      '/cm?cmnd=Power',
    ]);
  });

  it('addresses outlet 2 as Power2, sends user/password, and cycles off then on', async () => {
    const strip = tasmota(4, 's3cret');
    device = await startHttpDevice(strip.answer);
    const config = { driver: 'tasmota', url: device.url, outlet: 2, password: 's3cret', offTimeMs: 0 };
    const power = registry.create(config, { dutName: 'rpi4-a' });
    await power.cycle();
    assert.deepEqual(strip.state, [false, true, false, false]);
    assert.deepEqual(device.requests, [
      '/cm?user=admin&password=s3cret&cmnd=Power2%20Off',
      '/cm?user=admin&password=s3cret&cmnd=Power2%20On',
    ]);
  });

  it('reports a refused password with the device answer, and never prints the password', async () => {
    device = await startHttpDevice(tasmota(1, 'right').answer);
    const power = registry.create(
      { driver: 'tasmota', url: device.url, password: 'wrong' },
      { dutName: 'rpi4-a' },
    );
    await rejectsWith(
      power.on(),
      'JIGLET_E_UNAVAILABLE',
      /password=\*\*\*&cmnd=Power%20On: HTTP 401: \{"WARNING":"Need user=<username>&password=<password>"\}/,
    );
  });

  it('rejects an answer that is not JSON, quoting it', async () => {
    device = await startHttpDevice(() => ({ body: '<html><body>captive portal</body></html>' }));
    const power = registry.create({ driver: 'tasmota', url: device.url }, { dutName: 'rpi4-a' });
    await rejectsWith(
      power.on(),
      'JIGLET_E_UNAVAILABLE',
      /expected a JSON answer, got "<html><body>captive portal/,
    );
  });

  it('rejects JSON without the expected POWER key (e.g. an outlet the device lacks)', async () => {
    device = await startHttpDevice(tasmota(2).answer);
    const power = registry.create({ driver: 'tasmota', url: device.url, outlet: 3 }, { dutName: 'rpi4-a' });
    await rejectsWith(
      power.status(),
      'JIGLET_E_UNAVAILABLE',
      /expected \{"POWER3":"ON"\|"OFF"\}, got \{"Command":"Unknown"\}/,
    );
  });

  it('reports HTTP 500 with the trimmed body', async () => {
    device = await startHttpDevice(() => ({ status: 500, body: '  relay driver crashed\n\n' }));
    const power = registry.create({ driver: 'tasmota', url: device.url }, { dutName: 'rpi4-a' });
    await rejectsWith(
      power.off(),
      'JIGLET_E_UNAVAILABLE',
      /tasmota power switch of rpi4-a GET .*: HTTP 500: relay driver crashed$/,
    );
  });

  it('gives up on a device that never answers, at its deadline', async () => {
    device = await startHttpDevice(() => 'hang');
    const power = registry.create(
      { driver: 'tasmota', url: device.url, timeoutMs: 200 },
      { dutName: 'rpi4-a' },
    );
    const started = performance.now();
    await rejectsWith(power.on(), 'JIGLET_E_DEADLINE_EXCEEDED', /no answer within 200 ms/);
    assert.ok(performance.now() - started < 5000);
  });

  it('reports an unreachable device', async () => {
    device = await startHttpDevice(() => 'hang');
    const url = device.url;
    await device.close();
    device = undefined;
    const power = registry.create({ driver: 'tasmota', url }, { dutName: 'rpi4-a' });
    await rejectsWith(power.on(), 'JIGLET_E_UNAVAILABLE', /ECONNREFUSED/);
  });

  it('records each action as a step, failures included', async () => {
    device = await startHttpDevice(tasmota(1).answer);
    const steps: StepEvent[] = [];
    const power = registry.create(
      { driver: 'virtual', url: device.url },
      { dutName: 'vdut-1', onStep: (s) => steps.push(s) },
    );
    await power.cycle();
    assert.equal(await power.status(), 'on');
    assert.deepEqual(
      steps.map(({ dut, driver, action, result }) => ({ dut, driver, action, result })),
      [
        { dut: 'vdut-1', driver: 'virtual', action: 'cycle', result: undefined },
        { dut: 'vdut-1', driver: 'virtual', action: 'status', result: 'on' },
      ],
    );
    assert.deepEqual(device.requests, ['/cm?cmnd=Power%20Off', '/cm?cmnd=Power%20On', '/cm?cmnd=Power']);
    await device.close();
    device = undefined;
    await assert.rejects(power.on());
    assert.equal(steps.at(-1)?.error?.code, 'JIGLET_E_UNAVAILABLE');
  });

  it('keeps a path prefix of the configured URL', async () => {
    device = await startHttpDevice((url) =>
      url.pathname === '/plug1/cm' ? { body: { POWER: 'OFF' } } : { status: 404, body: 'Not Found' },
    );
    const power = registry.create({ driver: 'virtual', url: `${device.url}/plug1` }, { dutName: 'vdut-1' });
    assert.equal(await power.status(), 'off');
  });
});
