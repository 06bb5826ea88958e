import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { JigletError } from '../../protocol/src/errors.js';
import { stateFromOutput } from '../src/power-command.js';
import { builtinPowerRegistry } from '../src/power-registry.js';
import { runCommand } from '../src/run-command.js';

/** True once `pid` is gone or a zombie (nobody may reap orphans in this container). */
function isDead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true; // no /proc entry: reaped
  }
}

describe('command power driver', () => {
  const registry = builtinPowerRegistry();
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-power-command-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the configured on/off/status commands and reads the state from stdout', async () => {
    const file = path.join(dir, 'port2');
    const power = registry.create(
      {
        driver: 'command',
        on: `echo on > ${file}`,
        off: `echo off > ${file}`,
        status: `echo "Port 2: 0503 power $(cat ${file})"`,
        statusOnPattern: 'power on$',
        offTimeMs: 0,
      },
      { dutName: 'rpi4-a' },
    );
    await power.on();
    assert.equal(await power.status(), 'on');
    await power.off();
    assert.equal(readFileSync(file, 'utf8'), 'off\n');
    assert.equal(await power.status(), 'off');
    await power.cycle();
    assert.equal(await power.status(), 'on');
  });

  it('reports unknown without a status command or pattern, and honours an off pattern', () => {
    assert.equal(stateFromOutput('anything', {}), 'unknown');
    assert.equal(stateFromOutput('relay: ON', { statusOnPattern: ': ON', statusOffPattern: ': OFF' }), 'on');
    assert.equal(
      stateFromOutput('relay: OFF', { statusOnPattern: ': ON', statusOffPattern: ': OFF' }),
      'off',
    );
    assert.equal(
      stateFromOutput('relay: ???', { statusOnPattern: ': ON', statusOffPattern: ': OFF' }),
      'unknown',
    );
  });

  it('fails a non-zero exit with the exit code and the trimmed stderr', async () => {
    const power = registry.create(
      { driver: 'command', on: 'echo "  No compatible devices detected!  " >&2; exit 1', off: 'true' },
      { dutName: 'rpi4-a' },
    );
    await assert.rejects(power.on(), (error: unknown) => {
      assert.ok(error instanceof JigletError);
      assert.equal(error.code, 'JIGLET_E_UNAVAILABLE');
      assert.match(
        error.message,
        /^command power switch of rpi4-a: \/bin\/sh -c .*: exited with code 1: No compatible devices detected!$/,
      );
      return true;
    });
  });

  it('kills the whole process group of a command that hangs, at its deadline', async () => {
    const pidFile = path.join(dir, 'child.pid');
    // The shell starts a grandchild and waits on it: killing only the shell would leave `sleep` behind.
    const power = registry.create(
      {
        driver: 'command',
        on: `sleep 300 & echo $! > ${pidFile}; echo starting >&2; wait`,
        off: 'true',
        timeoutMs: 1000,
      },
      { dutName: 'rpi4-a' },
    );
    await assert.rejects(power.on(), (error: unknown) => {
      assert.ok(error instanceof JigletError);
      assert.equal(error.code, 'JIGLET_E_DEADLINE_EXCEEDED');
      assert.match(error.message, /no answer within 1000 ms; killed its process group; stderr: starting$/);
      return true;
    });
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(grandchild > 0);
    await waitUntil(`sleep (pid ${grandchild}) to die with its process group`, () => isDead(grandchild));
  });

  it('says a missing tool is not installed', async () => {
    await assert.rejects(runCommand(['jiglet-no-such-tool', '--help'], { timeoutMs: 1000, what: 'test' }), {
      code: 'JIGLET_E_FAILED_PRECONDITION',
      message: /jiglet-no-such-tool is not installed or not on PATH/,
    });
  });

  it('refuses a status pattern that is not a regular expression', () => {
    const checked = registry.check({ driver: 'command', on: 'true', off: 'true', statusOnPattern: '(' }, [
      'duts',
      0,
      'power',
    ]);
    assert.deepEqual(checked, {
      ok: false,
      problems: ['duts[0].power.statusOnPattern: expected a regular expression, got "("'],
    });
  });
});
