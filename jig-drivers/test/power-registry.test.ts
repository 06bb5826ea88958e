import assert from 'node:assert/strict';
import { z } from 'zod';
import type { StepEvent } from '../../protocol/src/driver-events.js';
import { JigletError } from '../../protocol/src/errors.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory } from '../src/power.js';
import { builtinPowerRegistry, PowerRegistry } from '../src/power-registry.js';

/** An in-memory driver implementing the same interface, recording when each primitive ran. */
function memoryDriver(log: { op: string; at: number }[]): PowerDriverFactory {
  const schema = z.strictObject({
    driver: z.literal('memory'),
    failOn: z.boolean().default(false),
    ...commonPowerOptions,
  });
  const factory: PowerDriverFactory<typeof schema> = {
    name: 'memory',
    configSchema: schema,
    create(config) {
      let on = false;
      const record = async (op: string, next: boolean) => {
        log.push({ op, at: performance.now() });
        if (next && config.failOn) throw new JigletError('JIGLET_E_UNAVAILABLE', 'relay stuck');
        on = next;
      };
      return makePowerSwitch(
        {
          on: () => record('on', true),
          off: () => record('off', false),
          status: async () => (on ? 'on' : 'off'),
        },
        config,
      );
    },
  };
  return factory;
}

describe('power registry', () => {
  it('holds every built-in driver', () => {
    assert.deepEqual(builtinPowerRegistry().names(), [
      'command',
      'gpio',
      'qemu',
      'shelly',
      'tasmota',
      'usb-hid-relay',
      'virtual',
    ]);
  });

  it('refuses to register a name twice', () => {
    const registry = new PowerRegistry().register(memoryDriver([]));
    assert.throws(() => registry.register(memoryDriver([])), { code: 'JIGLET_E_INVALID_ARGUMENT' });
  });

  it('cycles off, waits offTimeMs, then on', async () => {
    const log: { op: string; at: number }[] = [];
    const power = new PowerRegistry()
      .register(memoryDriver(log))
      .create({ driver: 'memory', offTimeMs: 120 }, { dutName: 'd' });
    await power.cycle();
    assert.deepEqual(
      log.map((entry) => entry.op),
      ['off', 'on'],
    );
    assert.ok(log[1]!.at - log[0]!.at >= 119, `paused ${log[1]!.at - log[0]!.at} ms`);
    assert.equal(await power.status(), 'on');
  });

  it('records steps with duration and the coded error of a failure', async () => {
    const steps: StepEvent[] = [];
    const power = new PowerRegistry()
      .register(memoryDriver([]))
      .create(
        { driver: 'memory', failOn: true, offTimeMs: 0 },
        { dutName: 'd', onStep: (s) => steps.push(s) },
      );
    await power.off();
    await assert.rejects(power.on(), /relay stuck/);
    assert.deepEqual(
      steps.map(({ action, error }) => ({ action, error })),
      [
        { action: 'off', error: undefined },
        { action: 'on', error: { code: 'JIGLET_E_UNAVAILABLE', message: 'relay stuck' } },
      ],
    );
    assert.ok(steps.every((s) => s.dut === 'd' && s.driver === 'memory' && s.durationMs >= 0));
  });

  it('validates a config with the driver schema, listing every problem', () => {
    const registry = builtinPowerRegistry();
    assert.throws(
      () =>
        registry.create(
          { driver: 'tasmota', url: 'ftp://x', outlet: 0, colour: 'red' },
          { dutName: 'rpi4-a' },
        ),
      (error: unknown) => {
        assert.ok(error instanceof JigletError);
        assert.equal(error.code, 'JIGLET_E_INVALID_ARGUMENT');
        assert.deepEqual(error.message.split('\n'), [
          'DUT rpi4-a: power.url: expected an http:// or https:// URL, got "ftp://x"',
          'DUT rpi4-a: power.outlet: expected a number >= 1, got 0',
          'DUT rpi4-a: power.colour: unknown key',
        ]);
        return true;
      },
    );
    assert.deepEqual(registry.check({ driver: 'zigbee' }, ['duts', 2, 'power']), {
      ok: false,
      problems: [
        'duts[2].power.driver: unknown power driver "zigbee"; expected one of command, gpio, qemu, shelly, tasmota, usb-hid-relay, virtual',
      ],
    });
  });
});
