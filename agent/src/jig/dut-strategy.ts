/**
 * DUT states (what labgrid calls a strategy): `off`, `booted` (a boot banner or login prompt seen
 * since the last power-on) and `shell` (logged in, the prompt answering), optionally running a
 * given image. Only what is missing is done — a DUT already at `shell` is not rebooted — and each
 * transition is a step: timed, published to the run record, and returned to the caller.
 */
import { DriverFailedError, JigletError } from '../../../protocol/src/errors.js';
import { step as recordStep, type StepSink } from '../../../protocol/src/step.js';
import type { Identity } from '../auth/identity.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { driverJobFailure } from './driver-job-output.js';
import type { DutShells } from './dut-exec.js';
import type { DutRuntime } from './dut-runtime.js';
import { compilePattern, LineMatcher } from './line-matcher.js';
import { pumpSerial } from './serial-pump.js';

/** A state a DUT can be brought to. */
export type GoalName = 'off' | 'booted' | 'shell';

/** One transition taken. */
export interface GotoStep {
  name: string;
  detail: string;
  durationMs: number;
}

/** How long a DUT that is on gets to show a shell prompt before it is power cycled instead. */
const SHELL_PROBE_MS = 10_000;

/** What a goto needs. */
export interface GotoOptions {
  dut: DutRuntime;
  goal: GoalName;
  imageSha256?: string;
  /** Flash the image even if the medium holds it from a completed flash. */
  reflash?: boolean;
  who: Identity;
  lease: string | undefined;
  /** The caller's lease check, run again before each power action. */
  fence: () => void;
  /**
   * Re-checks the lease once a flash job started and binds the job to it (lease-jobs.ts,
   * fenceStartedJob), as the Flash RPC does: no flash outlives the lease it was started under.
   */
  fenceJob?: (jobId: string) => Promise<void>;
  shells: DutShells;
  supervisor: Supervisor;
  /** How long the whole transition may take. */
  timeoutMs: number;
  publish: (step: { step: string; detail: string; durationMs: number; ok: boolean }) => void;
}

/** Brings the DUT to `goal`; resolves with the steps taken (one "already …" step when none was needed). */
export async function gotoState(o: GotoOptions): Promise<GotoStep[]> {
  const { dut, goal, who } = o;
  const steps: GotoStep[] = [];
  // Each transition is one recorded step (protocol's step.ts); its result is the detail shown.
  const record: StepSink = (e) => {
    const ok = e.error === undefined;
    if (ok) steps.push({ name: e.action, detail: e.result ?? '', durationMs: e.durationMs });
    const detail = ok ? (e.result ?? '') : e.error!.message.slice(0, 500);
    o.publish({ step: e.action, detail, durationMs: e.durationMs, ok });
  };
  const step = async (name: string, fn: () => Promise<string | undefined>): Promise<void> => {
    await recordStep(record, { dut: dut.dut.name, action: name }, fn, (detail) => detail ?? '');
  };

  const end = performance.now() + o.timeoutMs;
  const remaining = (): number => {
    const left = Math.round(end - performance.now());
    if (left <= 0)
      throw new JigletError('JIGLET_E_DEADLINE_EXCEEDED', `${dut.dut.name} did not reach ${goal} in time`);
    return left;
  };

  let fresh = false;
  if (o.imageSha256 && (o.reflash || dut.storage.dirty || dut.storage.lastImageSha256 !== o.imageSha256)) {
    await step('flash', async () => {
      const id = await dut.startFlash({
        imageSha256: o.imageSha256!,
        verify: true,
        owner: who.name,
        fence: o.fence,
      });
      await o.fenceJob?.(id);
      const ended = await o.supervisor.ended(id);
      if (ended.record.state !== 'exited' || ended.record.exitCode !== 0)
        throw new DriverFailedError(
          `flashing ${dut.dut.name} failed (job ${id}: ${ended.record.state}${ended.record.exitCode !== undefined ? `, exit code ${ended.record.exitCode}` : ''}); see jigctl logs ${id}`,
          { jobId: id, driverCode: (await driverJobFailure(ended)).code },
        );
      fresh = true;
      return `image ${o.imageSha256!.slice(0, 12)}, job ${id}`;
    });
  } else if (o.imageSha256) {
    const image = o.imageSha256.slice(0, 12);
    await step('already flashed', async () => `image ${image}`);
  }

  if (goal === 'off') {
    if (dut.power.state === 'off') await step('already off', async () => undefined);
    else
      await step(
        'power off',
        async () => `job ${(await dut.runPower('off', who.name, undefined, o.fence)).jobId}`,
      );
    return steps;
  }

  // A DUT without a power driver is taken to be on: its shell is all there is to reach.
  const on = (dut.power.state === 'on' || !dut.dut.power) && !fresh;
  if (on && goal === 'shell') {
    // Already up: a prompt (or a login) within a short probe means no reboot is needed.
    try {
      let loggedIn = false;
      const t0 = performance.now();
      loggedIn = await o.shells.reachShell(dut, who, o.lease, Math.min(SHELL_PROBE_MS, remaining()));
      const name = loggedIn ? 'login' : 'already shell';
      const durationMs = Math.round(performance.now() - t0);
      steps.push({ name, detail: '', durationMs });
      o.publish({ step: name, detail: '', durationMs, ok: true });
      return steps;
    } catch (err) {
      // A console held by someone else or a refused login is the answer; silence means reboot.
      if (!(err instanceof JigletError) || err.code !== 'JIGLET_E_DEADLINE_EXCEEDED') throw err;
    }
  }
  const pattern = dut.dut.shell.bootedPattern;
  if (on && goal === 'booted' && (await bootSeen(dut, pattern, AbortSignal.timeout(1000)))) {
    await step('already booted', async () => undefined);
    return steps;
  }
  const action = dut.power.state === 'off' ? 'on' : 'cycle';
  await step(
    `power ${action}`,
    async () => `job ${(await dut.runPower(action, who.name, undefined, o.fence)).jobId}`,
  );
  await step('boot', async () => {
    if (!(await bootSeen(dut, pattern, AbortSignal.timeout(remaining()))))
      throw new JigletError(
        'JIGLET_E_DEADLINE_EXCEEDED',
        `${dut.dut.name} did not print a line matching /${pattern}/ after the power-on in time (bootedPattern in its shell section)`,
      );
    return `/${pattern}/ seen`;
  });
  if (goal === 'shell') {
    await step('login', async () => {
      await o.shells.reachShell(dut, who, o.lease, remaining());
      return dut.dut.shell.user;
    });
  }
  return steps;
}

/** Whether a line matching `pattern` appears in the serial log after the last power-on (waits until `signal`). */
async function bootSeen(dut: DutRuntime, pattern: string, signal: AbortSignal): Promise<boolean> {
  const mark = dut.lastPowerOn;
  const capture = dut.requireCapture();
  const offset = mark && mark.captureJobId === capture.jobId ? mark.offset : 0;
  const matcher = new LineMatcher(compilePattern(pattern, false));
  const found = new AbortController();
  await pumpSerial({
    dut,
    start: { offset },
    follow: true,
    signal: AbortSignal.any([signal, found.signal]),
    reader: {
      onCapture: (_monitor, restarted) => {
        if (restarted) found.abort();
      },
      onRecord: (record) => {
        if (record.kind === 'chunk' && matcher.push(record.data, record.offset)) found.abort();
        return true;
      },
      drained: async () => {},
    },
  });
  return found.signal.aborted;
}
