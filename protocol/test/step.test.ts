/**
 * `step()`: every hardware action is recorded once, with its title, arguments, duration, what it
 * read back and its coded error, and the action's own result or error reaches the caller unchanged.
 */
import assert from 'node:assert/strict';
import type { StepEvent } from '../src/driver-events.js';
import { JigletError } from '../src/errors.js';
import { step, stepper } from '../src/step.js';

describe('step()', () => {
  it('records a step that succeeded: title, arguments, duration and what it read back', async () => {
    const events: StepEvent[] = [];
    const state = await step(
      (e) => events.push(e),
      { dut: 'rpi4-a', driver: 'tasmota', action: 'status', args: { outlet: 2 } },
      async () => 'on' as const,
      (s) => s,
    );
    assert.equal(state, 'on');
    assert.equal(events.length, 1);
    const [event] = events;
    assert.ok(Number.isInteger(event!.durationMs) && event!.durationMs >= 0);
    assert.deepEqual(
      { ...event, durationMs: 0 },
      {
        dut: 'rpi4-a',
        driver: 'tasmota',
        action: 'status',
        args: { outlet: 2 },
        durationMs: 0,
        result: 'on',
      },
    );
  });

  it('records the coded error of a step that failed, and rethrows the very same error', async () => {
    const events: StepEvent[] = [];
    const run = stepper((e) => events.push(e), { dut: 'd', driver: 'sdwire' });
    const stuck = new JigletError('JIGLET_E_UNAVAILABLE', 'sd-mux-ctrl: exited with code 1: no device');
    await assert.rejects(
      run('to-host', () => Promise.reject(stuck)),
      (err) => err === stuck,
    );
    await assert.rejects(
      run('write', () => Promise.reject(new TypeError('bug')), { target: '/dev/sdb' }),
      TypeError,
    );
    assert.deepEqual(
      events.map(({ durationMs: _, ...rest }) => rest),
      [
        {
          dut: 'd',
          driver: 'sdwire',
          action: 'to-host',
          error: { code: 'JIGLET_E_UNAVAILABLE', message: stuck.message },
        },
        {
          dut: 'd',
          driver: 'sdwire',
          action: 'write',
          target: '/dev/sdb',
          error: { code: 'JIGLET_E_INTERNAL', message: 'bug' },
        },
      ],
    );
  });

  it('just runs the action when nobody records', async () => {
    assert.equal(await step(undefined, { action: 'on' }, async () => 42), 42);
  });
});
