/**
 * The driver event protocol: what a `jig-driver` job prints is read back as it was written, a line
 * that is not a valid event stays text (never an exception, never a half-trusted object), and a
 * failed driver's code survives to the summary the agent turns into its error.
 */
import assert from 'node:assert/strict';
import {
  type DriverEvent,
  DriverEventReader,
  driverEventLine,
  MAX_DRIVER_LINE_CHARS,
  parsePowerRequest,
  readDriverLine,
  readDriverText,
  summarizeDriverFailure,
} from '../src/driver-events.js';

const step: DriverEvent = {
  kind: 'step',
  step: {
    dut: 'rpi4-a',
    driver: 'tasmota',
    action: 'status',
    args: { outlet: 2, dry: false, note: null },
    durationMs: 41,
    result: 'on',
  },
};
const failedStep: DriverEvent = {
  kind: 'step',
  step: {
    action: 'write',
    target: '/dev/sdb',
    durationMs: 1200,
    error: { code: 'JIGLET_E_DRIVER_FAILED', message: 'write /dev/sdb: EIO' },
  },
};
const progress: DriverEvent = {
  kind: 'flash',
  progress: { phase: 'write', bytesWritten: 4096, bytesRead: 8192, totalBytes: 65536, mbPerS: 12.5, etaS: 3 },
};
const failed: DriverEvent = {
  kind: 'failed',
  failure: { code: 'JIGLET_E_UNAVAILABLE', message: 'relay board 3 does not answer' },
};
const request: DriverEvent = { kind: 'power-request', request: { id: 7, action: 'cycle', offTimeMs: 500 } };
const answered: DriverEvent = { kind: 'power-answer', answer: { id: 7, ok: true, state: 'on' } };
const refused: DriverEvent = {
  kind: 'power-answer',
  answer: { id: 8, ok: false, code: 'JIGLET_E_DEADLINE_EXCEEDED', error: 'no answer in 5000 ms' },
};
const said: DriverEvent = { kind: 'text', text: 'jig-driver: relay board 3 does not answer' };

describe('driver event protocol', () => {
  it('reads back every kind of event exactly as it was written, one line each', () => {
    const all = [step, failedStep, progress, failed, request, answered, refused, said];
    for (const event of all) {
      const line = driverEventLine(event);
      assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, line);
      assert.deepEqual(readDriverLine(line.slice(0, -1)), event);
    }
    assert.deepEqual(readDriverText(all.map(driverEventLine).join('')), all);
  });

  it('keeps the line formats other processes and old logs rely on', () => {
    assert.equal(
      driverEventLine({ kind: 'step', step: { dut: 'd', driver: 'virtual', action: 'on', durationMs: 3 } }),
      '{"step":{"dut":"d","driver":"virtual","action":"on","durationMs":3}}\n',
    );
    assert.equal(
      driverEventLine(refused),
      '{"id":8,"ok":false,"code":"JIGLET_E_DEADLINE_EXCEEDED","error":"no answer in 5000 ms"}\n',
    );
    assert.equal(driverEventLine({ kind: 'text', text: 'two\nlines' }), 'two lines\n');
  });

  it('keeps a line that is not a valid event as text, whatever it looks like', () => {
    const odd = [
      'jig-driver flash: wrote 16 MiB',
      '{"step":{"action":"on"}}', // no duration
      '{"step":{"action":"on","durationMs":-1}}',
      '{"step":{"action":"on","durationMs":1,"error":{"code":"JIGLET_E_UNAVAILABLE"}}}', // no message
      '{"flash":{"phase":"levitate"}}',
      '{"failed":"yes"}',
      '{"id":1,"ok":true,"state":"sideways"}',
      '{"id":0,"action":"on"}',
      '{"step":', // torn
      '[1,2]',
      'null',
      '{}',
    ];
    for (const line of odd) assert.deepEqual(readDriverLine(line), { kind: 'text', text: line }, line);
  });

  it('reads an unknown error code as INTERNAL, and bad progress counters as 0', () => {
    assert.deepEqual(readDriverLine('{"failed":{"code":"JIGLET_E_FROM_THE_FUTURE","message":"m"}}'), {
      kind: 'failed',
      failure: { code: 'JIGLET_E_INTERNAL', message: 'm' },
    });
    assert.deepEqual(readDriverLine('{"flash":{"phase":"sync","bytesRead":-1,"mbPerS":"fast","etaS":-4}}'), {
      kind: 'flash',
      progress: { phase: 'sync', bytesWritten: 0, bytesRead: 0, totalBytes: null, mbPerS: 0, etaS: 0 },
    });
  });

  it('follows a stream in any pieces, multi-byte characters split included, and bounds long lines', () => {
    const text = `${driverEventLine(failed)}${driverEventLine({ kind: 'text', text: 'Größe: 4 GiB ✓' })}tail`;
    const bytes = Buffer.from(text, 'utf8');
    const reader = new DriverEventReader();
    const events: DriverEvent[] = [];
    for (let i = 0; i < bytes.length; i += 3) events.push(...reader.push(bytes.subarray(i, i + 3)));
    events.push(...reader.end());
    assert.deepEqual(events, [
      failed,
      { kind: 'text', text: 'Größe: 4 GiB ✓' },
      { kind: 'text', text: 'tail' },
    ]);

    const long = new DriverEventReader();
    const huge = 'x'.repeat(MAX_DRIVER_LINE_CHARS + 10);
    const first = long.push(huge.slice(0, 1000));
    const rest = [...long.push(huge.slice(1000)), ...long.push(`more\n${driverEventLine(progress)}`)];
    assert.deepEqual(first, []);
    assert.deepEqual(rest, [{ kind: 'text', text: huge.slice(0, MAX_DRIVER_LINE_CHARS) }, progress]);
    assert.deepEqual(long.end(), []);
  });

  it('answers a bad power-serve request with what is wrong and the id it could read', () => {
    assert.deepEqual(parsePowerRequest('{"id":3,"action":"on"}'), { id: 3, action: 'on' });
    assert.deepEqual(parsePowerRequest('{"id":3,"action":"explode"}'), {
      id: 3,
      problem: '"action" must be one of on, off, cycle, status',
    });
    assert.deepEqual(parsePowerRequest('{"id":4,"action":"cycle","offTimeMs":-5}'), {
      id: 4,
      problem: '"offTimeMs" must be a number of milliseconds',
    });
    assert.deepEqual(parsePowerRequest('{"id":1.5,"action":"on"}'), {
      id: 0,
      problem: 'a request needs a positive integer "id"',
    });
    assert.match(JSON.stringify(parsePowerRequest('on')), /"id":0,"problem":"a request is not JSON/);
  });

  it('sums up a failed driver: its own code and words, each once, the last three', () => {
    const stderr = [step, failedStep, failed, said].map(driverEventLine).join('');
    assert.deepEqual(summarizeDriverFailure(readDriverText(stderr)), {
      code: 'JIGLET_E_UNAVAILABLE', // the `failed` line's, over the last failed step's
      reason: 'write /dev/sdb: EIO; relay board 3 does not answer',
    });
    const noFailedLine = [
      driverEventLine(failedStep).trimEnd(),
      'Traceback: boom',
      '',
      'jig-driver: giving up',
    ].join('\n');
    assert.deepEqual(summarizeDriverFailure(readDriverText(noFailedLine)), {
      code: 'JIGLET_E_DRIVER_FAILED',
      reason: 'write /dev/sdb: EIO; Traceback: boom; giving up',
    });
    assert.deepEqual(summarizeDriverFailure(readDriverText('a\nb\nc\nd\n')), {
      code: undefined,
      reason: 'b; c; d',
    });
  });
});
