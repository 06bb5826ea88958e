/**
 * The steps of one attempt on a leased DUT: flash (if the job names an image), power cycle, boot —
 * with an image, all three by the agent's DUT-state strategy (GotoState), the one place that
 * sequences them — then the job's command as an agent job with the DUT and lease in its environment. A step that
 * fails is an infra-error at that step (attempt-verdict.ts); the command's own end is the verdict.
 */
import { durationText } from '../../../protocol/src/duration-text.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { MAX_TEST_CASES, type TestCase, testCaseSummary } from '../../../protocol/src/test-cases.js';
import type { GotoResult } from '../jig-client.js';
import type { JigletClient } from '../jiglet-client.js';
import { testCasesOf } from '../job-test-cases.js';
import type { Lease } from '../lease-client.js';
import { StepFailed, step, verdictOfCommand } from './attempt-verdict.js';
import type { QueueLogWriter } from './queue-log-writer.js';
import type { QueueJob } from './queue-store.js';
import { messageOf, type Outcome, retrying, type WorkerContext } from './worker-context.js';

/** How long a flashed DUT gets to boot (within the job's own timeout). */
const BOOT_TIMEOUT_MS = 5 * 60_000;
/**
 * How long the agent may take to flash and power off (the longest DUT-state call it accepts, its
 * MAX_EXEC_MS): a flash takes what the image needs, and a cancel or a lost lease stops it sooner.
 */
const FLASH_CALL_MS = 24 * 3600 * 1000;

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
    // The agent's DUT-state strategy (agent/src/jig/dut-strategy.ts, the GotoState RPC) does the
    // flash → power → boot sequence, as for `jigctl dut goto`: the worker only makes sure the agent
    // has the image, then asks for the DUT off with it (flashed unless the medium already holds
    // it, cleanly), then booted (powered on, boot pattern seen). Starting from off gives every
    // attempt a fresh boot.
    logs.note(`flashing ${image.path}`);
    const uploaded = await step('flash', signal, () => client.images.upload(image.path, { signal }));
    if (uploaded.sha256 !== image.sha256) {
      throw new StepFailed(
        'flash',
        new Error(
          `${image.path} changed since it was submitted (sha256 ${uploaded.sha256}, submitted ${image.sha256}); submit it again`,
        ),
        false,
      );
    }
    check();
    const flashed = await step('flash', signal, () =>
      untilAborted(
        signal,
        // Every attempt starts from a freshly written image (an earlier run may have changed the
        // medium); as before, the flash is not bounded by the job's timeout (the command and boot are).
        client.jig.gotoState(dut, 'off', {
          imageSha256: image.sha256,
          timeoutMs: FLASH_CALL_MS,
          reflash: true,
        }),
      ),
    );
    noteSteps(logs, flashed);
    check();
    logs.note('power cycle');
    // A flashed image must boot before its tests run: a DUT that never shows its boot pattern
    // (the jig description's shell.bootedPattern) is an infra-error at `boot`, not a failed test.
    const bootMs = Math.min(BOOT_TIMEOUT_MS, Math.max(1000, deadline - Date.now()));
    const booted = await step('boot', signal, () =>
      untilAborted(signal, client.jig.gotoState(dut, 'booted', { timeoutMs: bootMs })),
    );
    noteSteps(logs, booted);
    logs.note(`booted in ${durationText(booted.durationMs)}`);
  } else {
    logs.note('power cycle');
    await step('power', signal, () => client.jig.power(dut, 'off'));
    check();
    await step('power', signal, () => client.jig.power(dut, 'on'));
  }
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

/** Notes each transition the agent's DUT-state strategy took ("flash: image …, job … (40s)"). */
function noteSteps(logs: QueueLogWriter, done: GotoResult): void {
  for (const s of done.steps)
    logs.note(`${s.name}${s.detail ? `: ${s.detail}` : ''} (${durationText(s.durationMs)})`);
}

/**
 * Waits for an agent call, or rejects with the signal's reason as soon as it aborts: the attempt
 * then releases its lease, which stops what the call started on the agent (a flash job, a power
 * action), instead of waiting minutes for it to end.
 */
function untilAborted<T>(signal: AbortSignal, call: Promise<T>): Promise<T> {
  call.catch(() => undefined); // its end no longer matters once the attempt is interrupted
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    call.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
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
