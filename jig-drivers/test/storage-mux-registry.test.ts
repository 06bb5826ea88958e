import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { StepEvent } from '../../protocol/src/driver-events.js';
import { JigletError } from '../../protocol/src/errors.js';
import type { MuxSide, StorageMuxFactory } from '../src/storage-mux.js';
import { sideFromOutput } from '../src/storage-mux-command.js';
import { commonMuxOptions } from '../src/storage-mux-common.js';
import { builtinStorageMuxRegistry, StorageMuxRegistry } from '../src/storage-mux-registry.js';

/** An in-memory mux implementing the same interface; `stuck` makes switching to the host fail. */
function memoryMux(): StorageMuxFactory {
  const schema = z.strictObject({
    driver: z.literal('memory'),
    stuck: z.boolean().default(false),
    ...commonMuxOptions,
  });
  const factory: StorageMuxFactory<typeof schema> = {
    name: 'memory',
    configSchema: schema,
    create(config) {
      let side: MuxSide = 'dut';
      return {
        toHost: async () => {
          if (config.stuck) throw new JigletError('JIGLET_E_UNAVAILABLE', 'mux stuck');
          side = 'host';
        },
        toDut: async () => {
          side = 'dut';
        },
        status: async () => side,
      };
    },
  };
  return factory;
}

describe('storage mux registry', () => {
  it('holds every built-in driver', () => {
    assert.deepEqual(builtinStorageMuxRegistry().names(), [
      'command',
      'qemu',
      'sdwire',
      'usbsdmux',
      'virtual',
    ]);
  });

  it('refuses to register a name twice', () => {
    const registry = new StorageMuxRegistry().register(memoryMux());
    assert.throws(() => registry.register(memoryMux()), {
      code: 'JIGLET_E_INVALID_ARGUMENT',
      message: 'storage mux driver "memory" is registered twice',
    });
  });

  it('records steps with duration, the side read back and the coded error of a failure', async () => {
    const steps: StepEvent[] = [];
    const registry = new StorageMuxRegistry().register(memoryMux());
    const mux = registry.create(
      { driver: 'memory', stuck: true },
      { dutName: 'd', onStep: (s) => steps.push(s) },
    );
    await mux.toDut();
    await assert.rejects(mux.toHost(), /mux stuck/);
    assert.equal(await mux.status(), 'dut');
    assert.deepEqual(
      steps.map(({ action, result, error }) => ({ action, result, error })),
      [
        { action: 'to-dut', result: undefined, error: undefined },
        {
          action: 'to-host',
          result: undefined,
          error: { code: 'JIGLET_E_UNAVAILABLE', message: 'mux stuck' },
        },
        { action: 'status', result: 'dut', error: undefined },
      ],
    );
    assert.ok(steps.every((s) => s.dut === 'd' && s.driver === 'memory' && s.durationMs >= 0));
  });

  it('validates a config with the driver schema, listing every problem with its key path', () => {
    const registry = builtinStorageMuxRegistry();
    const at = ['duts', 2, 'storage', 'mux'];
    assert.deepEqual(registry.check({ driver: 'sdwire', serail: 'x', timeoutMs: 0 }, at), {
      ok: false,
      problems: [
        'duts[2].storage.mux.serial: missing, expected a string',
        'duts[2].storage.mux.timeoutMs: expected a number >= 1, got 0',
        'duts[2].storage.mux.serail: unknown key',
      ],
    });
    assert.deepEqual(registry.check({ driver: 'usbsdmux', sg: 'sg0' }, at), {
      ok: false,
      problems: ['duts[2].storage.mux.sg: expected the absolute path of the mux\'s /dev/sg* node, got "sg0"'],
    });
    assert.deepEqual(registry.check({ driver: 'virtual', url: 'ftp://x' }, at), {
      ok: false,
      problems: ['duts[2].storage.mux.url: expected an http:// or https:// URL, got "ftp://x"'],
    });
    assert.deepEqual(
      registry.check(
        { driver: 'command', host: 'true', dut: 'true', status: 'cat x', statusHostPattern: '(' },
        at,
      ),
      {
        ok: false,
        problems: ['duts[2].storage.mux.statusHostPattern: expected a regular expression, got "("'],
      },
    );
    assert.deepEqual(
      registry.check({ driver: 'command', host: 'true', dut: 'true', statusDutPattern: 'x' }, at),
      {
        ok: false,
        problems: ['duts[2].storage.mux.status: a status pattern needs a status command'],
      },
    );
    assert.deepEqual(registry.check({ driver: 'sd-wire' }, at), {
      ok: false,
      problems: [
        'duts[2].storage.mux.driver: unknown storage mux driver "sd-wire"; expected one of command, qemu, sdwire, usbsdmux, virtual',
      ],
    });
    assert.deepEqual(registry.check({}), {
      ok: false,
      problems: ['storage.mux.driver: missing, expected a storage mux driver name'],
    });
  });

  it('fills in defaults and refuses to build from an invalid config, naming the DUT', () => {
    const registry = builtinStorageMuxRegistry();
    assert.deepEqual(registry.check({ driver: 'sdwire', serial: 'sdw-1' }), {
      ok: true,
      data: { driver: 'sdwire', serial: 'sdw-1', timeoutMs: 10_000 },
    });
    assert.deepEqual(registry.check({ driver: 'virtual', url: 'http://127.0.0.1:1' }), {
      ok: true,
      data: { driver: 'virtual', url: 'http://127.0.0.1:1', timeoutMs: 5000 },
    });
    assert.throws(() => registry.create({ driver: 'usbsdmux' }, { dutName: 'imx8-evk' }), {
      code: 'JIGLET_E_INVALID_ARGUMENT',
      message: 'DUT imx8-evk: storage.mux.sg: missing, expected a string',
    });
  });
});

describe('command storage mux driver', () => {
  const registry = builtinStorageMuxRegistry();
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-mux-command-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the configured host/dut/status commands and reads the side from stdout', async () => {
    const file = path.join(dir, 'mux');
    const mux = registry.create(
      {
        driver: 'command',
        host: `echo host > ${file}`,
        dut: `echo dut > ${file}`,
        status: `echo "card: $(cat ${file})"`,
        statusHostPattern: '^card: host$',
        statusDutPattern: '^card: dut$',
      },
      { dutName: 'imx8-evk' },
    );
    await mux.toHost();
    assert.equal(readFileSync(file, 'utf8'), 'host\n');
    assert.equal(await mux.status(), 'host');
    await mux.toDut();
    assert.equal(await mux.status(), 'dut');
  });

  it('reads one pattern alone as "the other side when it does not match", and neither as unknown', () => {
    assert.equal(sideFromOutput('anything', {}), 'unknown');
    assert.equal(sideFromOutput('GPIO17=1', { statusHostPattern: '=1$' }), 'host');
    assert.equal(sideFromOutput('GPIO17=0', { statusHostPattern: '=1$' }), 'dut');
    assert.equal(sideFromOutput('GPIO17=0', { statusDutPattern: '=0$' }), 'dut');
    assert.equal(sideFromOutput('GPIO17=1', { statusDutPattern: '=0$' }), 'host');
    assert.equal(sideFromOutput('??', { statusHostPattern: 'H', statusDutPattern: 'D' }), 'unknown');
  });

  it('reports unknown without a status command, and a failing command with its stderr', async () => {
    const mux = registry.create(
      { driver: 'command', host: 'echo "mux: i2c write failed" >&2; exit 3', dut: 'true' },
      { dutName: 'imx8-evk' },
    );
    assert.equal(await mux.status(), 'unknown');
    await assert.rejects(mux.toHost(), (error: unknown) => {
      assert.ok(error instanceof JigletError);
      assert.equal(error.code, 'JIGLET_E_UNAVAILABLE');
      assert.match(
        error.message,
        /^command storage mux of imx8-evk: \/bin\/sh -c .*: exited with code 3: mux: i2c write failed$/,
      );
      return true;
    });
  });

  it('gives up on a hanging command at its deadline', async () => {
    const mux = registry.create(
      { driver: 'command', host: 'sleep 300', dut: 'true', timeoutMs: 200 },
      { dutName: 'imx8-evk' },
    );
    await assert.rejects(mux.toHost(), {
      code: 'JIGLET_E_DEADLINE_EXCEEDED',
      message: /no answer within 200 ms/,
    });
  });
});
