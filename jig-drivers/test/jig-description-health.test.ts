import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { JigletError } from '../../protocol/src/errors.js';
import {
  DEFAULT_HEALTH_CHECK_TIMEOUT_MS,
  findDut,
  loadJigDescription,
  parseJigDescription,
} from '../src/jig-description.js';

const LAB1 = fileURLToPath(new URL('../../fixtures/jigs/lab1.yaml', import.meta.url));

/** The problem lines of a description that must fail to parse. */
function problems(yaml: string): string[] {
  try {
    parseJigDescription(yaml, 'lab.yaml');
  } catch (error) {
    assert.ok(error instanceof JigletError, String(error));
    return error.message.split('\n');
  }
  assert.fail('the description was accepted');
}

describe('jig description: health checks', () => {
  it('reads a health check with its defaults, and leaves DUTs without one without the key', async () => {
    const jig = await loadJigDescription(LAB1);
    assert.deepEqual(findDut(jig, 'bbb-1').healthCheck, {
      command: ['sh', '-c', 'jigctl power cycle && jigctl expect --pattern "login: $" --timeout 2m'],
      env: { LANG: 'C.UTF-8' },
      everyJobs: 10,
      everyHours: 24,
      timeoutMs: 300_000,
    });
    assert.equal('healthCheck' in findDut(jig, 'rpi4-a'), false);
    const minimal = parseJigDescription(
      'duts:\n  - name: a\n    healthCheck: { command: ["true"], everyHours: 0.5 }',
      'lab.yaml',
    );
    assert.deepEqual(minimal.duts[0]?.healthCheck, {
      command: ['true'],
      env: {},
      everyHours: 0.5,
      timeoutMs: DEFAULT_HEALTH_CHECK_TIMEOUT_MS,
    });
  });

  it('names every mistake in a health check with its key path', () => {
    assert.deepEqual(problems('duts:\n  - name: a\n    healthCheck: { command: ["true"] }'), [
      'lab.yaml: duts[0].healthCheck: expected everyJobs, everyHours or both: when the check is due',
    ]);
    const lines = problems(`duts:
  - name: a
    healthCheck: { command: [], everyJobs: 0, env: { "1X": y }, timeoutMs: 86400000, every: 3 }`);
    assert.deepEqual(lines.sort(), [
      'lab.yaml: duts[0].healthCheck.command: expected a program and its arguments, got a list',
      'lab.yaml: duts[0].healthCheck.env["1X"]: expected an environment variable name, got "1X"',
      'lab.yaml: duts[0].healthCheck.every: unknown key',
      'lab.yaml: duts[0].healthCheck.everyJobs: expected a number >= 1, got 0',
      'lab.yaml: duts[0].healthCheck.timeoutMs: expected a number <= 43200000, got 86400000',
    ]);
  });
});
