/** `jigctl queue status ID`: one job in words, with its place in line and every attempt. */
import { labelText } from '../queue/queue-insight.js';
import type { QueueAttempt, QueueJob, QueuePlace } from '../queue/queue-store.js';
import { jobJson, out, visibleEnv, withStore } from './queue-cli-store.js';
import type { QueueJobFlags } from './register/queue-commands.js';

/** `jigctl queue status ID`: the job, where it ran and where its logs are, and each attempt. */
export async function queueStatusCommand(flags: QueueJobFlags): Promise<number> {
  const [job, attempts, place] = await withStore(flags, async (store) => {
    const found = await store.get(flags.id);
    return [
      found,
      await store.attempts(flags.id),
      found.state === 'queued' ? await store.place(flags.id) : undefined,
    ] as const;
  });
  if (flags.output === 'json') {
    await out(
      `${JSON.stringify({ ...jobJson(job), history: attempts, ...(place ? { queue: place } : {}) }, null, 2)}\n`,
    );
    return 0;
  }
  const env = Object.entries(visibleEnv(job));
  const lines = [
    `job ${job.id}: ${job.state}${job.cancelRequested && job.state !== 'cancelled' ? ' (cancel requested)' : ''}`,
    ...(job.verdict
      ? [
          `verdict:   ${job.verdict}${job.failedStep && job.verdict !== 'pass' ? ` at ${job.failedStep}` : ''}${job.verdictReason ? `: ${job.verdictReason}` : ''}`,
        ]
      : []),
    ...(place ? placeLines(job, place) : []),
    ...(job.state === 'queued' && job.avoid.length > 0
      ? [
          `retry:     prefers DUTs other than ${job.avoid.map((a) => a.dut).join(', ')} (an infra-error there)`,
        ]
      : []),
    `labels:    ${labelText(job.labels)}`,
    `command:   ${job.command.join(' ')}`,
    ...(env.length > 0 ? [`env:       ${env.map(([k, v]) => `${k}=${v}`).join(' ')}`] : []),
    ...(job.image ? [`image:     ${job.image.path} (sha256 ${job.image.sha256})`] : []),
    `priority:  ${job.priority}, timeout ${job.timeoutMs} ms, attempts ${job.attempts} of ${job.maxAttempts}`,
    `submitted: ${job.submittedAt.toISOString()}${job.submittedBy ? ` by ${job.submittedBy}` : ''}`,
    ...(job.dut ? [`ran on:    ${job.dut} at ${job.agent} (worker ${job.worker})`] : []),
    ...(job.agentJobId
      ? [`logs:      jigctl queue logs ${job.id}; agent job ${job.agentJobId} on ${job.agent}`]
      : []),
    ...(job.finishedAt ? [`finished:  ${job.finishedAt.toISOString()}`] : []),
    ...(job.exitCode !== undefined ? [`exit code: ${job.exitCode}`] : []),
    ...(job.error ? [`error:     ${job.error}`] : []),
    ...attempts.map(attemptLine),
  ];
  await out(`${lines.join('\n')}\n`);
  return 0;
}

/** "attempt 2: vdut-b (worker w1) 2026-… → infra-error at flash: …" */
function attemptLine(a: QueueAttempt): string {
  const end = a.verdict ?? (a.outcome === undefined ? 'running' : a.outcome);
  const where = a.step && a.verdict !== 'pass' ? ` at ${a.step}` : '';
  const code = a.exitCode !== undefined && a.verdict !== 'pass' ? ` (exit ${a.exitCode})` : '';
  return `attempt ${a.attempt}: ${a.dut} (worker ${a.worker}) ${a.startedAt.toISOString()} → ${end}${where}${code}${a.reason ? `: ${a.reason}` : ''}`;
}

/** 95_000 → "2m", 4_000 → "4s", 5_400_000 → "1h 30m": an estimate, not a measurement. */
function roughly(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  return `${Math.floor(m / 60)}h${m % 60 ? ` ${m % 60}m` : ''}`;
}

/** What a queued job waits for: its place in line, the DUTs that could run it, and when it may start. */
function placeLines(job: QueueJob, place: QueuePlace): string[] {
  const others = place.queuedWithSameLabels - 1;
  const position = `position:  ${place.position} of ${place.queuedWithSameLabels} queued ${place.queuedWithSameLabels === 1 ? 'job' : 'jobs'} for ${labelText(job.labels)}${others === 0 ? ' (next in line)' : ''}`;
  const duts =
    place.duts.length === 0
      ? 'DUTs:      no registered DUT has these labels'
      : `DUTs:      ${place.duts.length} ${place.duts.length === 1 ? 'matches' : 'match'}: ${place.duts
          .map((d) => `${d.name} ${d.activity === 'running' ? `running job ${d.job}` : d.activity}`)
          .join(', ')}`;
  const e = place.estimate;
  const estimate = e
    ? `estimate:  ${e.startInMs === 0 ? 'starts as soon as a worker picks it up' : `starts in about ${roughly(e.startInMs)}`} (typical run ${roughly(e.typicalRunMs)}, from the last ${e.fromRuns} ${e.fromRuns === 1 ? 'run' : 'runs'} with these labels)`
    : `estimate:  ${place.noEstimate ?? 'no estimate yet'}`;
  return [position, duts, estimate];
}
