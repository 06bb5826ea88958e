/** Human and JSON renderings of job records for jigctl. */
import { type Job, JobState } from '../../../protocol/gen/jiglet/v1/jobs.js';

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

/** How a job ended, in words: "exit 0", "signal SIGKILL (out of memory)", "failed: …". */
export function outcome(job: Job): string {
  const parts: string[] = [stateOf(job)];
  if (job.exitCode !== undefined) parts.push(`exit ${job.exitCode}`);
  if (job.signal) parts.push(`signal ${job.signal}`);
  if (job.oomKilled) parts.push('out of memory');
  if (job.stopReason) parts.push(`(${job.stopReason})`);
  if (job.error) parts.push(`: ${job.error}`);
  return parts.join(' ');
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
