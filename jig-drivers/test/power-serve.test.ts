/**
 * `jig-driver power-serve`'s protocol: one JSON request a line in, one JSON answer a line out,
 * in order, a bad line answered rather than ending the driver, a cycle's own off time honoured.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { parsePowerRequest } from '../../protocol/src/driver-events.js';
import { JigletError } from '../../protocol/src/errors.js';
import type { PowerState, PowerSwitch } from '../src/power.js';
import { servePower } from '../src/power-serve.js';

describe('power-serve', () => {
  it('answers each request in order, errors included, and ends with its input', async () => {
    const done: string[] = [];
    let state: PowerState = 'off';
    const switchFor = (offTimeMs: number | undefined): PowerSwitch => ({
      on: async () => {
        state = 'on';
        done.push('on');
      },
      off: async () => {
        throw new JigletError('JIGLET_E_DRIVER_FAILED', 'relay 2 stuck');
      },
      cycle: async () => {
        done.push(`cycle ${offTimeMs ?? 'default'}`);
      },
      status: async () => state,
    });
    const input = new PassThrough();
    const output = new PassThrough();
    let text = '';
    output.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
    });
    const served = servePower({ input, output, switchFor });
    input.end(
      [
        '{"id":1,"action":"on"}',
        '{"id":2,"action":"status"}',
        '',
        '{"id":3,"action":"off"}',
        'not json',
        '{"id":4,"action":"explode"}',
        '{"id":5,"action":"cycle","offTimeMs":50}',
      ].join('\n'),
    );
    await served;
    const answers = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(answers[0], { id: 1, ok: true, state: 'on' });
    assert.deepEqual(answers[1], { id: 2, ok: true, state: 'on' });
    assert.deepEqual(answers[2], {
      id: 3,
      ok: false,
      code: 'JIGLET_E_DRIVER_FAILED',
      error: 'relay 2 stuck',
    });
    assert.equal(answers[3]?.id, 0);
    assert.match(String(answers[3]?.error), /not JSON/);
    assert.equal(answers[4]?.id, 4);
    assert.match(String(answers[4]?.error), /"action" must be one of on, off, cycle, status/);
    assert.deepEqual(answers[5], { id: 5, ok: true, state: 'on' });
    assert.deepEqual(done, ['on', 'cycle 50']);
  });

  it('refuses requests without a usable id or off time', () => {
    assert.match(JSON.stringify(parsePowerRequest('{"action":"on"}')), /positive integer/);
    assert.match(JSON.stringify(parsePowerRequest('{"id":-1,"action":"on"}')), /positive integer/);
    assert.match(JSON.stringify(parsePowerRequest('{"id":2,"action":"cycle","offTimeMs":"x"}')), /offTimeMs/);
    assert.deepEqual(parsePowerRequest('{"id":2,"action":"cycle","offTimeMs":0}'), {
      id: 2,
      action: 'cycle',
      offTimeMs: 0,
    });
  });
});
