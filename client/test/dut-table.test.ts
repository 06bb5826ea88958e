/**
 * The `jigctl jig` table as a person reads it: it fits 120 columns, says durations and sizes in
 * human units, and keeps internals (drivers, capture jobs, raw capture events) for `-o wide`.
 */
import assert from 'node:assert/strict';
import { captureEventText, dutTable, humanBytes, humanSpan } from '../../client/src/cli/dut-table.js';
import { Dut, DutHealth, PowerState, SerialState } from '../../protocol/gen/jiglet/v1/jig.js';

const NOW = Date.parse('2026-12-07T12:00:00Z');

function dut(
  name: string,
  over: { labels?: Record<string, string>; lastEvent?: string; bytes?: number },
): Dut {
  return Dut.fromPartial({
    name,
    labels: over.labels ?? { 'device-type': 'virtual', site: 'local' },
    health: DutHealth.DUT_HEALTH_GOOD,
    power: { driver: 'tasmota', state: PowerState.POWER_STATE_OFF, stateTime: new Date(NOW - 185_000) },
    serial: {
      source: `/dev/serial/by-id/usb-FTDI/${name}-uart`,
      port: `/dev/serial/by-id/usb-FTDI/${name}-uart`,
      state: over.lastEvent?.startsWith('waiting')
        ? SerialState.SERIAL_STATE_ABSENT
        : SerialState.SERIAL_STATE_OPEN,
      captureJobId: '3f568e21-8722-4c4c-9ae6-c1690ec365e0',
      bytesCaptured: BigInt(over.bytes ?? 958),
      lastEvent: over.lastEvent ?? 'flush tcioflush',
      lastEventTime: new Date(NOW - 60_000),
    },
  });
}

const DUTS = [
  dut('vdut-a', { bytes: 3 * 1024 * 1024 + 500_000 }),
  dut('vdut-b', {
    labels: {
      'device-type': 'raspberrypi4-64',
      site: 'lab-building-2-rack-14',
      'usb-serial': 'vanishing',
      'storage-mux': 'sdwire-rev2',
      owner: 'platform-team',
    },
    lastEvent: 'waiting /dev/serial/by-id/usb-FTDI/vdut-b-uart 180000 ms',
  }),
];

describe('the jigctl jig table', () => {
  it('fits 120 columns by default and speaks human units', () => {
    const text = dutTable(DUTS, { now: NOW });
    for (const line of text.split('\n')) assert.ok(line.length <= 120, `${line.length} columns: ${line}`);
    const [header, a, b] = text.split('\n');
    assert.match(header!, /^DUT +HEALTH +POWER +SERIAL +CONSOLE +LABELS$/);
    assert.match(a!, /^vdut-a +good +off for 3m 5s +open, 3\.5 MiB +- +device-type=virtual,site=local$/);
    assert.match(b!, /^vdut-b +good +off for 3m 5s +absent, 958 B +- +device-type=raspberrypi4-64,.*…$/);
    assert.doesNotMatch(text, /tcioflush|\d ms|tasmota|3f568e21/);
  });

  it('-o wide adds driver, port, capture job and the last event in words', () => {
    const text = dutTable(DUTS, { now: NOW, wide: true });
    assert.match(
      text,
      /^DUT +HEALTH +POWER +SINCE +SERIAL +BYTES +PORT +CONSOLE +CAPTURE JOB +LAST EVENT +LABELS\n/,
    );
    assert.match(text, /off \(tasmota\)/);
    assert.match(text, /\(3m 5s ago\)/);
    assert.match(text, /3f568e21-8722-4c4c-9ae6-c1690ec365e0/);
    assert.match(text, /opened; stale input flushed \(1m ago\)/);
    assert.match(text, /waiting for \/dev\/serial\/by-id\/usb-FTDI\/vdut-b-uart \(3m so far\) \(1m ago\)/);
    assert.match(text, /owner=platform-team$/m, 'wide never cuts the labels');
  });

  it('says spans, sizes and capture events as people do', () => {
    assert.deepEqual([0, 12_400, 185_000, 3_600_000, 7_500_000, 90_000_000].map(humanSpan), [
      '0s',
      '12s',
      '3m 5s',
      '1h',
      '2h 5m',
      '1d 1h',
    ]);
    assert.deepEqual([958, 1536, 3 * 1024 ** 3].map(humanBytes), ['958 B', '1.5 KiB', '3.0 GiB']);
    assert.equal(captureEventText('waiting /dev/ttyUSB0 0 ms'), 'waiting for /dev/ttyUSB0');
    assert.equal(captureEventText('gone /dev/ttyUSB0 vanished'), 'gone /dev/ttyUSB0 vanished');
  });
});
