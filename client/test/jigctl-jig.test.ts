/**
 * jigctl's jig commands as scripts and engineers use them, against an agent serving virtual DUTs:
 * the DUT list, power, serial tail (raw and JSON), console (piped and on a real pty) and expect,
 * with their exit codes.
 */
import assert from 'node:assert/strict';
import {
  assertOneLineError,
  JIGCTL,
  type JigctlOptions,
  type JigctlRun,
  runJigctl,
} from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';

type Run = JigctlRun;

/** jigctl against the virtual jig's agent. */
const jigctl = (v: VirtualJig, args: string[], opts: JigctlOptions = {}): Promise<Run> =>
  runJigctl(v.t, args, opts);

interface JsonRecord {
  offset: number;
  nextOffset: number;
  time: string;
  type: 'chunk' | 'event';
  data?: string;
  event?: string;
}

const jsonLines = (text: string): JsonRecord[] =>
  text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as JsonRecord);

describe('jigctl jig commands', function () {
  this.timeout(30_000);
  let v: VirtualJig;
  /** Where the serial log stood just before vdut-a was powered on. */
  let bootOffset = 0;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }, { name: 'vdut-b' }]);
  });
  after(async () => {
    await v?.stop();
  });

  it('jig lists the DUTs with their power driver, as JSON and as a table', async () => {
    const [r, table, none, wide, noneText] = await Promise.all([
      jigctl(v, ['jig', '-o', 'json'], { as: 'viewer' }),
      jigctl(v, ['jig', '--label', 'device-type=virtual'], { as: 'viewer' }),
      jigctl(v, ['jig', '-o', 'json', '--label', 'device-type=real'], { as: 'viewer' }),
      jigctl(v, ['jig', '-o', 'wide'], { as: 'viewer' }),
      jigctl(v, ['jig', '--label', 'device-type=real'], { as: 'viewer' }),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const duts = JSON.parse(r.stdout) as { name: string; labels: object; power: { driver: string } }[];
    assert.deepEqual(
      duts.map((d) => [d.name, d.power.driver]),
      [
        ['vdut-a', 'virtual'],
        ['vdut-b', 'virtual'],
      ],
    );
    assert.match(
      table.stdout,
      /^DUT +HEALTH +POWER +SERIAL +CONSOLE +LABELS\nvdut-a +good +\w+.* +device-type=virtual\n/,
    );
    for (const line of table.stdout.split('\n')) assert.ok(line.length <= 120, line);
    assert.match(
      wide.stdout,
      /^DUT +HEALTH +POWER +SINCE +SERIAL +BYTES +PORT +CONSOLE +CAPTURE JOB +LAST EVENT +LABELS\n/,
    );
    assert.match(wide.stdout, /\nvdut-a +good +\w+ \(virtual\) /);
    assert.deepEqual(JSON.parse(none.stdout), []);
    assert.equal(noneText.stdout, 'no DUT has the labels device-type=real\n');
  });

  it('power on, expect the login prompt from that power-on, power status', async () => {
    const [on, off] = await Promise.all([
      jigctl(v, ['power', 'on', '--dut', 'vdut-a', '-o', 'json']),
      jigctl(v, ['power', 'off', '--dut', 'vdut-b']),
    ]);
    assert.equal(on.code, 0, on.stderr);
    assert.match(off.stdout, /^vdut-b: off \([\d.]+ m?s, job [0-9a-f-]{36}\)\n$/);
    const result = JSON.parse(on.stdout) as { state: string; serialOffset: number; jobId: string };
    assert.equal(result.state, 'on');
    bootOffset = result.serialOffset;
    const prompt = await jigctl(v, [
      ...['expect', '--dut', 'vdut-a', '--pattern', 'login: $', '--offset', String(bootOffset)],
      ...['--timeout', '10s'],
    ]);
    assert.equal(prompt.code, 0, prompt.stderr);
    assert.equal(prompt.stdout, 'vdut-a login: \n');
    const status = await jigctl(v, ['power', 'status', '--dut', 'vdut-a'], { as: 'viewer' });
    assert.equal(status.stdout, 'on\n');
  });

  it('a piped console types stdin, detaches once the DUT is quiet; serial tail shows the result', async () => {
    const r = await jigctl(v, ['console', '--dut', 'vdut-a'], { input: 'root\rsecret\runame -a\r' });
    assert.equal(r.code, 0, r.stderr);
    const op = v.t.client('operator');
    await op.jig.expect('vdut-a', 'Linux vdut-a 6\\.1\\.0-virtual', {
      offset: bootOffset,
      timeoutMs: 10_000,
    });
    const tail = await jigctl(v, ['serial', 'tail', '--dut', 'vdut-a'], { as: 'viewer' });
    assert.equal(tail.code, 0, tail.stderr);
    assert.match(tail.stdout, /U-Boot 2024\.01 \(virtual\)/);
    // Typed ahead of the shell: the terminal echoes the line when it arrives, usually before the
    // shell's first prompt.
    assert.match(tail.stdout, /uname -a\r\n(root@vdut-a:~# )?Linux vdut-a 6\.1\.0-virtual #1 SMP/);
    // Capture events go to stderr only, one line each.
    assert.match(tail.stderr, /^\[serial\] \d\d:\d\d:\d\d\.\d{3} open /m);
    assert.doesNotMatch(tail.stdout, /\[serial\]/);
  });

  it('serial tail -o json prints one record a line and resumes at --offset', async () => {
    const [raw, json] = await Promise.all([
      jigctl(v, ['serial', 'tail', '--dut', 'vdut-a'], { as: 'viewer' }),
      jigctl(v, ['serial', 'tail', '--dut', 'vdut-a', '-o', 'json']),
    ]);
    const all = jsonLines(json.stdout);
    assert.equal(all[0]?.offset, 0);
    for (const [i, rec] of all.slice(1).entries()) assert.equal(rec.offset, all[i]!.nextOffset);
    assert.equal(all.map((r) => r.data ?? '').join(''), raw.stdout);
    const middle = all[Math.floor(all.length / 2)]!;
    const args = ['serial', 'tail', '--dut', 'vdut-a', '-o', 'json', '--offset', String(middle.offset)];
    const resumed = jsonLines((await jigctl(v, args)).stdout);
    assert.deepEqual(resumed, all.slice(all.indexOf(middle)));
  });

  it('serial tail -f prints new output as it comes and exits 0 on Ctrl-C', async () => {
    let injected = false;
    let interrupted = false;
    const r = await jigctl(v, ['serial', 'tail', '--dut', 'vdut-a', '-f', '--since', '10m'], {
      onStdout: (text, child) => {
        // The old log has arrived, so the follow is live: new output must come through it.
        if (!injected) {
          injected = true;
          v.dut('vdut-a').inject(Buffer.from('fresh line 42\r\n'));
        }
        if (!interrupted && text.includes('fresh line 42')) interrupted = child.kill('SIGINT');
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /U-Boot[\s\S]*fresh line 42\r\n$/);
  });

  it('expect times out with exit 1, the pattern and the last lines seen', async () => {
    const r = await jigctl(v, [
      'expect',
      '--dut',
      'vdut-a',
      '--pattern',
      'kernel panic',
      '--timeout',
      '300ms',
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^jigctl: no line matched \/kernel panic\/ within 300 ms\n {2}last lines seen:\n/);
    // The earlier test typed `uname -a` ahead of the shell's first prompt, so its output follows it.
    assert.match(r.stderr, /^ {4}(root@vdut-a:~# )?Linux vdut-a 6\.1\.0-virtual #1 SMP armv7l GNU\/Linux$/m);
    assert.equal(r.stdout, '');
  });

  it('exits 2 for a pattern that does not compile, and 2 naming the DUTs for an unknown one', async () => {
    const [bad, unknown] = await Promise.all([
      jigctl(v, ['expect', '--dut', 'vdut-a', '--pattern', '(a', '--timeout', '1s']),
      jigctl(v, ['power', 'status', '--dut', 'nope']),
    ]);
    assert.equal(bad.code, 2);
    assertOneLineError(bad);
    assert.match(bad.stderr, /does not compile/);
    assert.equal(unknown.code, 2, 'a DUT-name typo is a wrong request, like a bad flag (README: Exit codes)');
    assertOneLineError(unknown);
    assert.match(unknown.stderr, /no DUT "nope" .*\(there are: vdut-a, vdut-b\)/);
  });

  it('exits 77 when a viewer switches power', async () => {
    const r = await jigctl(v, ['power', 'on', '--dut', 'vdut-b'], { as: 'viewer' });
    assert.equal(r.code, 77);
    assertOneLineError(r);
    assert.match(r.stderr, /may read but not switch the power of vdut-b/);
  });

  it('refuses a second console writer, and exits 1 when an admin takes the console over', async () => {
    const first = await v.t.client('operator').jig.console('vdut-a');
    const refused = await jigctl(v, ['console', '--dut', 'vdut-a'], { as: 'operator2', input: 'x' });
    await first.close();
    assert.equal(refused.code, 1);
    assertOneLineError(refused);
    assert.match(refused.stderr, /in use by operator since/);

    let admin: Promise<{ close(): Promise<void> }> | undefined;
    const kicked = await jigctl(v, ['console', '--dut', 'vdut-a'], {
      holdStdin: true,
      input: 'echo attached-1\r',
      onStdout: (text) => {
        // Our keystrokes came back: attached. Now the admin takes over while our stdin is open.
        if (!admin && text.includes('attached-1\r\n'))
          admin = v.t.client('admin').jig.console('vdut-a', { takeOver: true });
      },
    });
    await (await admin!).close();
    assert.equal(kicked.code, 1);
    assertOneLineError(kicked);
    assert.match(kicked.stderr, /admin took over the console of vdut-a/);
  });

  it('on a terminal: raw keystrokes, Ctrl-] detaches with exit 0, the terminal is cooked after', async () => {
    // python's pty.spawn runs a shell on a real pty and relays our pipes to it.
    const shell = `"${process.execPath}" "${JIGCTL}" console --dut vdut-a; echo "exit=$?"; stty -a`;
    const script = 'import pty, sys; pty.spawn(["sh", "-c", sys.argv[1]])';
    let typed = 0;
    const r = await jigctl(v, [], {
      command: ['python3', '-c', script, shell],
      holdStdin: true,
      onStdout: (text, child) => {
        if (typed === 0 && text.includes("Connected to vdut-a. Escape character is '^]'.")) {
          typed = 1;
          child.stdin!.write('echo tty-ok\r');
        } else if (typed === 1 && /tty-ok\r*\nroot@vdut-a/.test(text)) {
          typed = 2;
          child.stdin!.write(Buffer.from([0x1d]));
        } else if (text.includes('exit=')) child.stdin!.end();
      },
    });
    assert.equal(r.code, 0, r.stderr);
    // Raw mode: no local echo (only the DUT's), and a lone Ctrl-] arrived without an Enter.
    assert.equal(r.stdout.split('echo tty-ok').length, 2, r.stdout);
    assert.match(r.stdout, /Connection closed\.\r\nexit=0\r\n/);
    // (Node also resets the terminal at exit; this checks what the user is left with.)
    assert.match(r.stdout, /[\s;](icanon)[\s;]/);
    assert.match(r.stdout, /[\s;](echo)[\s;]/);
  });
});
