/** Human and JSON renderings for jigctl: job records, DUTs, serial records and expect results. */
import { type Job, JobState } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { STOP_REASON_WORDS } from '../../../protocol/src/stop-reasons.js';
import {
  type Dut,
  type ExpectResult,
  type ExpectTimeoutError,
  PowerState,
  type SerialRecord,
  SerialState,
} from '../jig-client.js';
import { healthJson } from './dut-health-format.js';

const STATE_NAMES: Record<JobState, string> = {
  [JobState.JOB_STATE_UNSPECIFIED]: 'unknown',
  [JobState.JOB_STATE_PENDING]: 'pending',
  [JobState.JOB_STATE_RUNNING]: 'running',
  [JobState.JOB_STATE_EXITED]: 'exited',
  [JobState.JOB_STATE_FAILED]: 'failed',
  [JobState.JOB_STATE_STOPPED]: 'stopped',
  [JobState.JOB_STATE_LOST]: 'lost',
  [JobState.UNRECOGNIZED]: 'unknown',
};

/** A state name as `jigctl list --state` takes it → the wire enum (yargs checked the name). */
export function parseJobState(name: string): JobState {
  for (const [k, v] of Object.entries(STATE_NAMES)) if (v === name && Number(k) > 0) return Number(k);
  throw new Error(`unknown job state "${name}"`);
}

/** The lower-case state name. */
export function stateOf(job: Job): string {
  return STATE_NAMES[job.state] ?? 'unknown';
}

/** A plain-JSON view of a job (bigints as numbers, dates as ISO strings). */
export function jobJson(job: Job): Record<string, unknown> {
  return {
    id: job.id,
    owner: job.owner,
    state: stateOf(job),
    command: job.spec?.command,
    args: job.spec?.args,
    dut: job.spec?.dut || undefined,
    exitCode: job.exitCode,
    signal: job.signal || undefined,
    oomKilled: job.oomKilled,
    stopReason: job.stopReason || undefined,
    error: job.error || undefined,
    pid: job.pid || undefined,
    outputBytes: Number(job.outputBytes),
    containment: job.containment,
    limits: job.spec?.limits && {
      memoryBytes: Number(job.spec.limits.memoryBytes),
      cpuMillis: job.spec.limits.cpuMillis,
      pidsMax: job.spec.limits.pidsMax,
    },
    timeoutMs: Number(job.spec?.timeoutMs ?? 0n),
    createdAt: job.createdAt?.toISOString(),
    startedAt: job.startedAt?.toISOString(),
    endedAt: job.endedAt?.toISOString(),
  };
}

/**
 * Where a job is, or how it ended, in words: "running", "exited with code 3", "stopped by request
 * (SIGTERM)", "killed by SIGKILL: out of memory", "failed: command not found: …".
 */
export function outcome(job: Job, opts: { signal?: boolean } = {}): string {
  const how = (code: string): string => {
    if (opts.signal === false) return code;
    if (job.signal) return `${code} (${job.signal})`;
    return job.exitCode !== undefined ? `${code} (exit ${job.exitCode})` : code;
  };
  switch (job.state) {
    case JobState.JOB_STATE_STOPPED:
      return how(`stopped ${STOP_REASON_WORDS[job.stopReason] ?? 'by request'}`);
    case JobState.JOB_STATE_FAILED:
      return job.error ? `failed: ${job.error}` : 'failed';
    case JobState.JOB_STATE_LOST:
      return 'lost (the agent restarted while it ran)';
    case JobState.JOB_STATE_EXITED:
      if (job.oomKilled) return `killed by ${job.signal || 'SIGKILL'}: out of memory`;
      return job.signal ? `killed by ${job.signal}` : `exited with code ${job.exitCode ?? '?'}`;
    default:
      return stateOf(job);
  }
}

/** How a finished job ended and when, for `jigctl stop`: "stopped by request at 12:00:01". */
export function endedText(job: Job): string {
  const how = outcome(job, { signal: false });
  return job.endedAt ? `${how} at ${clockTime(job.endedAt).slice(0, 8)}` : how;
}

/** `jigctl status` text. */
export function statusText(job: Job): string {
  const j = jobJson(job);
  const rows: [string, unknown][] = [
    ['id', j.id],
    ['owner', j.owner],
    ['state', outcome(job)],
    ['command', [job.spec?.command, ...(job.spec?.args ?? [])].map(shellQuote).join(' ')],
    ['dut', j.dut],
    ['pid', j.pid],
    ['output', `${j.outputBytes} bytes`],
    ['containment', j.containment],
    ['created', j.createdAt],
    ['started', j.startedAt],
    ['ended', j.endedAt],
  ];
  return rows
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`)
    .join('\n');
}

/** `jigctl list` table. */
export function listTable(jobs: Job[]): string {
  const rows = jobs.map((j) => [
    j.id,
    j.owner,
    stateOf(j),
    j.exitCode !== undefined ? String(j.exitCode) : j.signal || '-',
    j.createdAt?.toISOString().replace('T', ' ').slice(0, 19) ?? '',
    [j.spec?.command, ...(j.spec?.args ?? [])].map(shellQuote).join(' ').slice(0, 60),
  ]);
  const header = ['ID', 'OWNER', 'STATE', 'EXIT', 'CREATED', 'COMMAND'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function shellQuote(s: string | undefined): string {
  if (s === undefined) return '';
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Left-aligned columns two spaces apart, as `jigctl list` prints them. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows]
    .map((r) =>
      widths
        .map((w, i) => (r[i] ?? '').padEnd(w))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A duration for people: "250 ms", "1.2 s", "30 s". */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return `${s >= 100 ? Math.round(s) : Math.round(s * 10) / 10} s`;
}

/** Local time of day with milliseconds, "12:00:01.123", for event lines. */
export function clockTime(time: Date): string {
  const p = (n: number, width = 2): string => String(n).padStart(width, '0');
  return `${p(time.getHours())}:${p(time.getMinutes())}:${p(time.getSeconds())}.${p(time.getMilliseconds(), 3)}`;
}

/** The stderr report of an expect that timed out: what was sought, the port's state, the last lines. */
export function timeoutReport(err: ExpectTimeoutError): string {
  const head = `jigctl: no line matched /${err.pattern}/ within ${humanDuration(err.timeoutMs)}`;
  const lines = [err.serialState ? `${head}: ${err.serialState}` : head];
  if (err.lastLines.length === 0) lines.push('  no lines were seen');
  else lines.push('  last lines seen:', ...err.lastLines.map((l) => `    ${l}`));
  return `${lines.join('\n')}\n`;
}

/** One stderr line for a capture event: "[serial] 12:00:01.123 gone /dev/ttyUSB0 vanished". */
export function eventLine(record: Extract<SerialRecord, { type: 'event' }>): string {
  return `[serial] ${clockTime(record.time)} ${record.event}${record.detail ? ` ${record.detail}` : ''}\n`;
}

/** A serial record as one JSON line of `serial tail -o json`. */
export function recordJson(r: SerialRecord): Record<string, unknown> {
  const at = { offset: r.offset, nextOffset: r.nextOffset, time: r.time.toISOString() };
  return r.type === 'chunk'
    ? { ...at, type: 'chunk', data: r.data.toString('utf8') }
    : { ...at, type: 'event', event: r.event, detail: r.detail };
}

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

/** A plain-JSON view of a DUT (enums as words, offsets as numbers, times as ISO strings). */
export function dutJson(d: Dut): Record<string, unknown> {
  const p = d.power;
  const s = d.serial;
  return {
    name: d.name,
    labels: d.labels,
    health: healthJson(d),
    safePower: d.safePower,
    power: p && {
      driver: p.driver,
      state: POWER_NAMES[p.state] ?? 'unknown',
      stateTime: p.stateTime?.toISOString(),
      busy: p.busy,
      lastJobId: p.lastJobId || undefined,
      lastError: p.lastError || undefined,
    },
    serial: s && {
      source: s.source,
      port: s.port || undefined,
      baud: s.baud,
      state: SERIAL_NAMES[s.state] ?? 'unknown',
      captureJobId: s.captureJobId || undefined,
      endOffset: Number(s.endOffset),
      bytesCaptured: Number(s.bytesCaptured),
      lastEvent: s.lastEvent || undefined,
      lastEventTime: s.lastEventTime?.toISOString(),
      consoleWriter: s.consoleWriter || undefined,
    },
  };
}

/** A plain-JSON view of an expect match. */
export function expectJson(r: ExpectResult): Record<string, unknown> {
  return { ...r, time: r.time?.toISOString() };
}
