/**
 * The `jigctl jig` table. By default it fits a 120-column terminal and says what a person looks
 * for (health, power and for how long, serial state and size, who holds the console); `-o wide`
 * adds the driver, port, capture job and last capture event, and `-o json` everything.
 */
import { type Dut, PowerState, SerialState } from '../jig-client.js';
import { healthName, outOfServiceLines } from './dut-health-format.js';
import { clockTime, renderTable } from './format.js';

/** The width the default table fits: a common terminal, and a CI log viewer. */
export const DEFAULT_TABLE_WIDTH = 120;

const POWER_NAMES: Partial<Record<PowerState, string>> = {
  [PowerState.POWER_STATE_ON]: 'on',
  [PowerState.POWER_STATE_OFF]: 'off',
};

const SERIAL_NAMES: Partial<Record<SerialState, string>> = {
  [SerialState.SERIAL_STATE_STARTING]: 'starting',
  [SerialState.SERIAL_STATE_OPEN]: 'open',
  [SerialState.SERIAL_STATE_ABSENT]: 'absent',
  [SerialState.SERIAL_STATE_STOPPED]: 'stopped',
};

/** A span for people: "12s", "3m 5s", "2h 5m", "3d 4h". */
export function humanSpan(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const pair = (a: number, ua: string, b: number, ub: string) => (b ? `${a}${ua} ${b}${ub}` : `${a}${ua}`);
  if (s < 3600) return pair(Math.floor(s / 60), 'm', s % 60, 's');
  if (s < 86_400) return pair(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'm');
  return pair(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}

/** A size for people: "958 B", "1.2 KiB", "3.4 MiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/**
 * A capture event in words. The serial log stores them terse and machine-readable
 * ("waiting /dev/ttyUSB0 180000 ms", "flush tcioflush"); the table says what they mean.
 */
export function captureEventText(event: string): string {
  const [name = '', ...rest] = event.split(' ');
  const detail = rest.join(' ');
  const waited = /^(.*) (\d+) ms$/.exec(detail);
  if (name === 'waiting' && waited) {
    const ms = Number(waited[2]);
    return ms === 0 ? `waiting for ${waited[1]}` : `waiting for ${waited[1]} (${humanSpan(ms)} so far)`;
  }
  if (name === 'flush') return 'opened; stale input flushed';
  return event;
}

function powerCell(d: Dut, now: number, wide: boolean): string {
  const p = d.power;
  if (!p) return '-';
  const state = POWER_NAMES[p.state] ?? 'unknown';
  const extra = [wide ? p.driver : '', p.busy ? 'busy' : ''].filter(Boolean).join(', ');
  const span = p.stateTime && !wide ? ` for ${humanSpan(now - p.stateTime.getTime())}` : '';
  return `${state}${span}${extra ? ` (${extra})` : ''}`;
}

function serialCell(d: Dut, wide: boolean): string {
  const s = d.serial;
  if (!s) return '-';
  const state = SERIAL_NAMES[s.state] ?? 'unknown';
  return wide ? state : `${state}, ${humanBytes(Number(s.bytesCaptured))}`;
}

function labelsCell(d: Dut): string {
  return (
    Object.entries(d.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',') || '-'
  );
}

/** The time of day for today, the date otherwise, and how long ago: "12:00:01 (3m ago)". */
function since(time: Date, now: number): string {
  const day =
    time.toDateString() === new Date(now).toDateString()
      ? clockTime(time).slice(0, 8)
      : time.toISOString().slice(0, 10);
  return `${day} (${humanSpan(now - time.getTime())} ago)`;
}

/** Cuts the last column so every line fits `width`, marking a cut with "…". */
function fitLastColumn(rows: string[][], header: readonly string[], width: number): string[][] {
  const last = header.length - 1;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const before = widths.slice(0, last).reduce((a, w) => a + w + 2, 0);
  const room = Math.max(header[last]!.length, width - before);
  return rows.map((r) => r.map((c, i) => (i === last && c.length > room ? `${c.slice(0, room - 1)}…` : c)));
}

/** `jigctl jig` as text; why a DUT is out of service, and a failed last power job, are named below it. */
export function dutTable(duts: readonly Dut[], opts: { wide?: boolean; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  let table: string;
  if (opts.wide) {
    const header = [
      'DUT',
      'HEALTH',
      'POWER',
      'SINCE',
      'SERIAL',
      'BYTES',
      'PORT',
      'CONSOLE',
      'CAPTURE JOB',
      'LAST EVENT',
      'LABELS',
    ];
    const rows = duts.map((d) => [
      d.name,
      healthName(d),
      powerCell(d, now, true),
      d.power?.stateTime ? since(d.power.stateTime, now) : '-',
      serialCell(d, true),
      d.serial ? humanBytes(Number(d.serial.bytesCaptured)) : '-',
      d.serial ? d.serial.port || d.serial.source : '-',
      d.serial?.consoleWriter || '-',
      d.serial?.captureJobId || '-',
      d.serial?.lastEvent
        ? `${captureEventText(d.serial.lastEvent)}${d.serial.lastEventTime ? ` (${humanSpan(now - d.serial.lastEventTime.getTime())} ago)` : ''}`
        : '-',
      labelsCell(d),
    ]);
    table = renderTable(header, rows);
  } else {
    const header = ['DUT', 'HEALTH', 'POWER', 'SERIAL', 'CONSOLE', 'LABELS'];
    const rows = duts.map((d) => [
      d.name,
      healthName(d),
      powerCell(d, now, false),
      serialCell(d, false),
      d.serial?.consoleWriter || '-',
      labelsCell(d),
    ]);
    table = renderTable(header, fitLastColumn(rows, header, DEFAULT_TABLE_WIDTH));
  }
  const errors = duts
    .filter((d) => d.power?.lastError)
    .map((d) => `${d.name}: power job ${d.power!.lastJobId} failed: ${d.power!.lastError}`);
  return [table, ...outOfServiceLines(duts), ...errors].join('\n');
}
