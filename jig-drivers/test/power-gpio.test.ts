import assert from 'node:assert/strict';
import { createGpioPowerDriver, gpiogetArgv, gpiosetArgv } from '../src/power-gpio.js';
import { PowerRegistry } from '../src/power-registry.js';
import type { CommandResult, CommandRunner } from '../src/run-command.js';

/** Records argv and answers like libgpiod v1's tools would (no GPIO chip exists on test machines). */
function fakeRunner(stdout = ''): { runner: CommandRunner; calls: string[][] } {
  const calls: string[][] = [];
  const runner: CommandRunner = async (argv, options) => {
    assert.equal(options.timeoutMs, 5000);
    calls.push([...argv]);
    return { stdout: argv[0] === 'gpioget' ? stdout : '', stderr: '' } satisfies CommandResult;
  };
  return { runner, calls };
}

describe('gpio power driver', () => {
  it('builds gpiod 1.6 command lines, with -l for active-low lines', () => {
    const base = {
      driver: 'gpio' as const,
      chip: 'gpiochip0',
      line: 17,
      activeLow: false,
      offTimeMs: 0,
      timeoutMs: 5000,
    };
    assert.deepEqual(gpiosetArgv(base, true), ['gpioset', 'gpiochip0', '17=1']);
    assert.deepEqual(gpiosetArgv(base, false), ['gpioset', 'gpiochip0', '17=0']);
    assert.deepEqual(gpiosetArgv({ ...base, activeLow: true, chip: 4 }, true), [
      'gpioset',
      '-l',
      '4',
      '17=1',
    ]);
    assert.equal(gpiogetArgv(base), undefined);
    assert.deepEqual(gpiogetArgv({ ...base, sense: { line: 27, activeLow: true } }), [
      'gpioget',
      '-l',
      'gpiochip0',
      '27',
    ]);
  });

  it('switches through gpioset and reads status from the sense line only', async () => {
    const fake = fakeRunner('1\n');
    const registry = new PowerRegistry().register(createGpioPowerDriver(fake.runner));
    const power = registry.create(
      { driver: 'gpio', line: 17, activeLow: true, sense: { line: 27 }, offTimeMs: 0 },
      { dutName: 'rpi4-a' },
    );
    await power.cycle();
    assert.equal(await power.status(), 'on');
    assert.deepEqual(fake.calls, [
      ['gpioset', '-l', 'gpiochip0', '17=0'],
      ['gpioset', '-l', 'gpiochip0', '17=1'],
      ['gpioget', 'gpiochip0', '27'],
    ]);
  });

  it('reports unknown without a sense line, never reading (and so floating) the output line', async () => {
    const fake = fakeRunner();
    const power = new PowerRegistry()
      .register(createGpioPowerDriver(fake.runner))
      .create({ driver: 'gpio', line: 17 }, { dutName: 'rpi4-a' });
    assert.equal(await power.status(), 'unknown');
    assert.deepEqual(fake.calls, []);
  });

  it('rejects gpioget output that is not 0 or 1', async () => {
    const fake = fakeRunner('gpioget: error reading GPIO values\n');
    const power = new PowerRegistry()
      .register(createGpioPowerDriver(fake.runner))
      .create({ driver: 'gpio', line: 17, sense: { line: 4 } }, { dutName: 'rpi4-a' });
    await assert.rejects(power.status(), {
      code: 'JIGLET_E_UNAVAILABLE',
      message: /gpioget gpiochip0 4: expected 0 or 1, got "gpioget: error/,
    });
  });

  it('refuses a sense line equal to the output line', () => {
    const checked = new PowerRegistry()
      .register(createGpioPowerDriver(fakeRunner().runner))
      .check({ driver: 'gpio', line: 17, sense: { line: 17 } });
    assert.equal(checked.ok, false);
    assert.match(
      checked.ok ? '' : checked.problems.join('\n'),
      /^power\.sense\.line: the sense line must differ from the output line/,
    );
  });
});
