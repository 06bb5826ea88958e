/**
 * HIL suites as a lab writes them, against the client library only. They run on the built-in
 * virtual jig in `npm test`, and on any real jiglet with JIGLET_ADDR, certificates and JIGLET_DUT
 * (see hil-tests/support/target.ts for the variables).
 */
import assert from 'node:assert/strict';
import type { SerialRecord } from '../client/src/jig-client.js';
import { STEP_TIMEOUT_MS, sendAndExpect } from './support/login.js';
import { type HilTarget, openHilTarget } from './support/target.js';

/** Collects a followed tail until `done` says stop; resolves with the records. */
function tailUntil(
  client: HilTarget['operator'],
  dut: string,
  start: { offset?: number; fromEnd?: boolean },
  done: (records: SerialRecord[]) => boolean,
): Promise<SerialRecord[]> {
  return (async () => {
    const records: SerialRecord[] = [];
    const stop = new AbortController();
    const deadline = AbortSignal.timeout(STEP_TIMEOUT_MS);
    const signal = AbortSignal.any([stop.signal, deadline]);
    for await (const r of client.jig.serial(dut, { ...start, follow: true, signal })) {
      records.push(r);
      if (done(records)) {
        stop.abort();
        break;
      }
    }
    if (deadline.aborted)
      throw new Error(`tail of ${dut} did not see what it waited for in ${STEP_TIMEOUT_MS} ms`);
    return records;
  })();
}

const text = (records: SerialRecord[]): string =>
  records.map((r) => (r.type === 'chunk' ? r.data.toString('latin1') : '')).join('');
const events = (records: SerialRecord[]): string[] =>
  records.flatMap((r) => (r.type === 'event' ? [`${r.event} ${r.detail}`] : []));

/**
 * Powers `dut` on and resolves with where that began and its login prompt. An adapter that comes
 * back with the power can be opened after a fast board printed its prompt, and opening it drops
 * what it held (bindings-cpp flushes on open), as an engineer's late-opened terminal shows nothing.
 * So once the capture has the port again, one Enter asks the getty for a fresh prompt, as the
 * engineer would; typed while the board still boots, it is dropped and the boot's own prompt comes.
 */
async function powerOnToLogin(
  target: HilTarget,
  dut: string,
): Promise<{ serialOffset: number; prompt: { lineOffset: number } }> {
  const { jig } = target.operator;
  const on = await jig.power(dut, 'on');
  if (target.portVanishes) {
    await tailUntil(target.viewers[0]!, dut, { offset: on.serialOffset }, (r) =>
      events(r).some((e) => e.startsWith('flush')),
    );
    const session = await jig.console(dut);
    try {
      await session.write('\r');
    } finally {
      await session.close();
    }
  }
  const prompt = await jig.expect(dut, target.login.loginPrompt, {
    offset: on.serialOffset,
    timeoutMs: STEP_TIMEOUT_MS,
  });
  return { serialOffset: on.serialOffset, prompt };
}

describe('HIL: a DUT on the jig', function () {
  this.timeout(10 * STEP_TIMEOUT_MS);
  let target: HilTarget;
  before(async () => {
    target = await openHilTarget();
  });
  after(async () => {
    await target?.stop();
  });

  it('power-cycles N times with one continuous serial log and every boot seen', async () => {
    const { jig } = target.operator;
    const first = await jig.power(target.dut, 'cycle');
    const capture = (await jig.duts()).find((d) => d.name === target.dut)?.serial?.captureJobId;
    await jig.expect(target.dut, target.login.loginPrompt, {
      offset: first.serialOffset,
      timeoutMs: STEP_TIMEOUT_MS,
    });
    for (let i = 1; i < target.cycles; i++) {
      const cycle = await jig.power(target.dut, 'cycle');
      const banner = await jig.expect(target.dut, target.bootBanner, {
        offset: cycle.serialOffset,
        timeoutMs: STEP_TIMEOUT_MS,
      });
      await jig.expect(target.dut, target.login.loginPrompt, {
        offset: banner.nextOffset,
        timeoutMs: STEP_TIMEOUT_MS,
      });
    }
    const log: SerialRecord[] = [];
    for await (const r of jig.serial(target.dut, { offset: first.serialOffset })) log.push(r);
    // One capture throughout, no restarts, records back to back: nothing was lost between boots.
    assert.ok(
      log.every((r) => r.captureJobId === capture),
      'the capture job changed during the cycles',
    );
    assert.ok(!events(log).some((e) => e.startsWith('capture-restarted')));
    for (let i = 1; i < log.length; i++) assert.ok(log[i]!.offset >= log[i - 1]!.nextOffset);
    const boots = text(log).split(target.bootBanner).length - 1;
    assert.equal(boots, target.cycles, `expected ${target.cycles} boots in the serial log, saw ${boots}`);
  });

  it('runs a command on the DUT after a power cycle (exec logs in first)', async () => {
    const { jig } = target.operator;
    await jig.power(target.dut, 'cycle');
    const out = await jig.exec(target.dut, target.command.text, { timeoutMs: STEP_TIMEOUT_MS });
    assert.equal(out.exitCode, 0);
    assert.equal(out.loggedIn, true);
    assert.match(out.stdout.toString(), new RegExp(target.command.expect, 'm'));
    const failed = await jig.exec(target.dut, 'exit 42', { timeoutMs: STEP_TIMEOUT_MS });
    assert.equal(failed.exitCode, 42);
  });

  it('keeps capturing when the serial port vanishes during power-off, and recovers when it returns', async () => {
    const { jig } = target.operator;
    const dut = target.vanishingDut;
    const { serialOffset: onAt, prompt: first } = await powerOnToLogin(target, dut);
    const off = await jig.power(dut, 'off');
    if (target.portVanishes) {
      await tailUntil(target.viewers[0]!, dut, { offset: off.serialOffset }, (r) =>
        events(r).some((e) => e.startsWith('gone')),
      );
    }
    const { prompt } = await powerOnToLogin(target, dut);
    const log: SerialRecord[] = [];
    for await (const r of jig.serial(dut, { offset: onAt })) {
      log.push(r);
      if (r.offset >= prompt.lineOffset) break;
    }
    const seen = events(log);
    if (target.portVanishes) {
      const gone = seen.findIndex((e) => e.startsWith('gone'));
      const reopen = seen.findIndex((e) => e.startsWith('reopen'));
      assert.ok(gone >= 0 && reopen > gone, `expected gone then reopen, got ${JSON.stringify(seen)}`);
      // The first boot's output is still there, before the gap. (Not its banner: an adapter that
      // comes back with the power, as this one does, can miss a board's first lines on a busy
      // host, printed before the capture could open it; see powerOnToLogin.)
      const gap = log.find((r) => r.type === 'event' && r.event === 'gone')!;
      assert.ok(first.lineOffset < gap.offset, 'the first boot is not before the gap');
    }
    // Both boots' login prompts, in the same log (which this read reached).
    assert.equal(new Set(log.map((r) => r.captureJobId)).size, 1);
    assert.ok(first.lineOffset < prompt.lineOffset);
    assert.ok(log.at(-1)!.offset >= prompt.lineOffset);
  });

  it('lets two engineers tail while a third types, and both see the same bytes', async () => {
    const { jig } = target.operator;
    await jig.power(target.dut, 'cycle');
    // exec logs in; the console then types at the shell prompt it left.
    await jig.exec(target.dut, 'true', { timeoutMs: STEP_TIMEOUT_MS });
    const at = Number((await jig.duts()).find((d) => d.name === target.dut)!.serial!.endOffset);
    const session = await jig.console(target.dut);
    try {
      const marker = `hil-${Date.now()}`;
      const done = (r: SerialRecord[]): boolean =>
        text(r).includes(`${marker}\r\n`) && /[#$] $/.test(text(r));
      const tails = target.viewers.map((viewer) => tailUntil(viewer, target.dut, { offset: at }, done));
      await sendAndExpect(target, session, at, `echo ${marker}`, `^${marker}$`);
      const [one, two] = await Promise.all(tails);
      assert.ok(text(one!).includes(`echo ${marker}`));
      const shortest = Math.min(text(one!).length, text(two!).length);
      assert.equal(text(one!).slice(0, shortest), text(two!).slice(0, shortest));
    } finally {
      await session.close();
    }
  });
});
