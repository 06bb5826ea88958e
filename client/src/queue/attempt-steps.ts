/**
 * The steps of one attempt on a leased DUT: flash (if the job names an image), power cycle, boot,
 * then the job's command as an agent job with the DUT and lease in its environment. A step that
 * fails is an infra-error at that step (attempt-verdict.ts); the command's own end is the verdict.
 */
import { durationText } from '../../../protocol/src/duration-text.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { MAX_TEST_CASES, type TestCase, testCaseSummary } from '../../../protocol/src/test-cases.js';
import type { JigletClient } from '../jiglet-client.js';
import { testCasesOf } from '../job-test-cases.js';
import type { Lease } from '../lease-client.js';
import { StepFailed, step, verdictOfCommand } from './attempt-verdict.js';
import type { QueueLogWriter } from './queue-log-writer.js';
import type { QueueJob } from './queue-store.js';
import { messageOf, type Outcome, retrying, type WorkerContext } from './worker-context.js';

/** How long a flashed DUT gets to boot (within the job's own timeout). */
const BOOT_TIMEOUT_MS = 5 * 60_000;

/** Flash (if an image was given), power cycle, then the command; resolves with the outcome. */
export async function runSteps(
  ctx: WorkerContext,
  job: QueueJob,
  dut: string,
  lease: Lease,
  client: JigletClient,
  logs: QueueLogWriter,
  signal: AbortSignal,
  ran: { cases: TestCase[] },
): Promise<Outcome> {
  const deadline = Date.now() + job.timeoutMs;
  const check = (): void => {
    if (signal.aborted) throw signal.reason;
  };
  logs.note(`attempt ${job.attempts} on ${dut} (agent ${ctx.agent}, lease ${lease.id}, worker ${ctx.name})`);
  const image = job.image;
  if (image) {
    logs.note(`flashing ${image.path}`);
    const flashed = await step('flash', signal, () => client.flash(dut, image.path, { signal }));
    if (flashed.imageSha256 !== image.sha256) {
      throw new StepFailed(
        'flash',
        new Error(
          `${image.path} changed since it was submitted (sha256 ${flashed.imageSha256}, submitted ${image.sha256}); submit it again`,
        ),
        false,
      );
    }
    logs.note(`flashed (agent job ${flashed.jobId})`);
  }
  check();
  logs.note('power cycle');
  await step('power', signal, () => client.jig.power(dut, 'off'));
  check();
  if (image) {
    // A flashed image must boot before its tests run: a DUT that never shows its boot pattern
    // (the jig description's shell.bootedPattern) is an infra-error at `boot`, not a failed test.
    const bootMs = Math.min(BOOT_TIMEOUT_MS, Math.max(1000, deadline - Date.now()));
    const booted = await step('boot', signal, () =>
      client.jig.gotoState(dut, 'booted', { timeoutMs: bootMs }),
    );
    logs.note(`booted in ${durationText(booted.durationMs)}`);
  } else await step('power', signal, () => client.jig.power(dut, 'on'));
  check();
  const [command, ...args] = job.command;
  const remaining = Math.max(1000, deadline - Date.now());
  const started = await step('command', signal, () =>
    client.start({
      command: command!,
      args,
      dut,
      // The submitter's variables first: the worker's own always win (submit refuses JIGLET_*).
      env: {
        ...job.env,
        JIGLET_DUT: dut,
        JIGLET_LEASE: lease.id,
        JIGLET_QUEUE_JOB: job.id,
        JIGLET_ATTEMPT: String(job.attempts),
      },
      timeoutMs: remaining,
    }),
  );
  await retrying(ctx, () => ctx.store.setAgentJob(job.id, job.attempts, ctx.name, started.id));
  logs.note(`running ${job.command.join(' ')} as agent job ${started.id}`);
  const onAbort = (): void => {
    void client.stop(started.id, 2000).catch(() => undefined);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const done = await step('agent', signal, async () => {
      for await (const event of client.output(started.id, { follow: true })) {
        if (event.type === 'chunk') logs.write(event.data);
        else return event.job;
      }
      throw new JigletError(
        'JIGLET_E_INTERNAL',
        `the output of agent job ${started.id} ended without its record`,
      );
    });
    check();
    ran.cases = testCasesOf(done);
    await storeTestCases(ctx, job, ran.cases, logs);
    return verdictOfCommand(done, job.command, job.timeoutMs);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** Stores the test cases the agent read from the job's $JIGLET_RESULTS; a failure is noted, not fatal. */
async function storeTestCases(
  ctx: WorkerContext,
  job: QueueJob,
  cases: TestCase[],
  logs: QueueLogWriter,
): Promise<void> {
  if (cases.length === 0) return;
  try {
    const dropped = await retrying(ctx, () => ctx.store.saveTestCases(job.id, job.attempts, cases));
    logs.note(
      `${testCaseSummary(cases)}${dropped > 0 ? ` (${dropped} past the first ${MAX_TEST_CASES} not stored)` : ''}`,
    );
  } catch (err) {
    logs.note(`the test cases of this attempt could not be stored: ${messageOf(err)}`);
  }
}
