/**
 * The exec engine against a real /bin/sh on a real pty: markers, exit codes, CR LF, long lines,
 * kernel lines, stdin, timeouts and login, exactly as it meets them on a serial console.
 */
import assert from 'node:assert/strict';
import { type PtyShell, startPtyShell } from '../../fixtures/test-support/pty-shell.js';
import { JigletError } from '../../protocol/src/errors.js';
import { ExecParser, execLine } from '../src/jig/exec-protocol.js';
import { compilePattern } from '../src/jig/line-matcher.js';
import { ShellSession, type ShellSettings } from '../src/jig/shell-session.js';

// A getty in miniature: asks again on an empty name or a wrong password.
const LOGIN = `while :; do printf '\\nbox login: '; read u; [ -z "$u" ] && continue; printf 'Password: '; stty -echo; read p; stty echo; echo; if [ "$u" = root ] && [ "$p" = secret ]; then PS1='root@box:~# ' exec sh -i; fi; echo 'Login incorrect'; done`;

function settings(over: Partial<ShellSettings> = {}): ShellSettings {
  return {
    user: 'root',
    password: () => 'secret',
    loginPrompt: compilePattern('login: $', false),
    passwordPrompt: compilePattern('[Pp]assword: $', false),
    prompt: compilePattern('[#$] $', false),
    postLogin: [],
    ...over,
  };
}

const deadline = (ms = 20_000): AbortSignal => AbortSignal.timeout(ms);

describe('exec engine on a pty running /bin/sh', function () {
  this.timeout(60_000);
  let shell: PtyShell;
  let session: ShellSession;

  before(async () => {
    shell = await startPtyShell(LOGIN);
    session = new ShellSession('box', settings());
  });
  after(async () => shell.close());

  const run = async (
    command: string,
    opts: { timeoutMs?: number; stdin?: string; interactive?: boolean } = {},
  ) => {
    await session.ready(shell.channel, deadline());
    return session.run(
      shell.channel,
      {
        command,
        timeoutMs: opts.timeoutMs ?? 20_000,
        interactive: opts.interactive,
        stdin: opts.stdin === undefined ? undefined : Buffer.from(opts.stdin),
      },
      deadline(opts.timeoutMs ?? 20_000),
    );
  };

  it('logs in at a login prompt, then runs at once at the shell prompt', async () => {
    assert.equal(await session.ready(shell.channel, deadline()), true);
    assert.equal(await session.ready(shell.channel, deadline()), false);
    const r = await run('echo hi');
    assert.equal(r.stdout.toString(), 'hi\n');
    assert.equal(r.exitCode, 0);
  });

  it('gives back exit codes 0, 1, 42 and 255, and exit leaves the login shell alone', async () => {
    for (const code of [0, 1, 42, 255]) {
      const r = await run(`exit ${code}`);
      assert.equal(r.exitCode, code);
    }
    assert.equal((await run('false')).exitCode, 1);
    assert.equal((await run('echo still here')).stdout.toString(), 'still here\n');
  });

  it('passes output through exactly: no trailing newline, CR LF, empty output', async () => {
    assert.equal((await run("printf 'no newline'")).stdout.toString(), 'no newline');
    assert.equal((await run("printf 'a\\r\\nb\\n'")).stdout.toString(), 'a\r\nb\n');
    assert.equal((await run('true')).stdout.toString(), '');
    assert.equal((await run("printf '\\n\\n'")).stdout.toString(), '\n\n');
  });

  it('handles commands and output lines far wider than 80 columns', async () => {
    const word = 'x'.repeat(300);
    const r = await run(`echo ${word} ${word}; echo 'quote'"'"'s and $HOME-less $dollars'`);
    assert.equal(r.stdout.toString(), `${word} ${word}\nquote's and $HOME-less $dollars\n`);
  });

  it('keeps kernel lines out of stdout and reports them', async () => {
    const r = await run("printf 'a\\n[   12.345678] usb 1-1: new device\\nb\\n'");
    assert.equal(r.stdout.toString(), 'a\nb\n');
    assert.deepEqual(r.kernelLines, ['[   12.345678] usb 1-1: new device']);
    // One that cuts into a line: the console prints it at the cursor and ends it with CR LF.
    const cut = await run("printf 'hello wor[  123.456789] eth0: link up\\nld\\n'");
    assert.equal(cut.stdout.toString(), 'hello world\n');
    assert.deepEqual(cut.kernelLines, ['[  123.456789] eth0: link up']);
    const two = await run("printf 'hello wor[  123.456789] one\\n[  123.456790] two\\nld\\n'");
    assert.equal(two.stdout.toString(), 'hello world\n');
    assert.deepEqual(two.kernelLines, ['[  123.456789] one', '[  123.456790] two']);
  });

  it('gives a command that reads stdin /dev/null, and the console with interactive', async () => {
    const r = await run('cat; echo done');
    assert.equal(r.stdout.toString(), 'done\n');
    const i = await run('wc -l', { interactive: true, stdin: 'one\ntwo\n' });
    assert.match(i.stdout.toString(), /\b2\n$/);
    assert.equal(i.exitCode, 0);
  });

  it('returns 1 MiB of output intact', async () => {
    const r = await run('yes abcdefghijklmnopqrstuvwxyz0123456789 2>/dev/null | head -c 1048576');
    const odd = r.stdout
      .toString()
      .split('\n')
      .filter((l, i, all) => l !== 'abcdefghijklmnopqrstuvwxyz0123456789' && i < all.length - 1);
    assert.deepEqual(odd, []);
    assert.equal(r.stdout.length, 1048576);
    assert.equal(r.stdout.toString().split('\n')[0], 'abcdefghijklmnopqrstuvwxyz0123456789');
  });

  it('interrupts a command at its timeout with exit code 124; the next command works', async () => {
    const r = await run('echo started; sleep 60', { timeoutMs: 1000 });
    assert.equal(r.exitCode, 124);
    assert.equal(r.timedOut, true);
    assert.equal(r.stdout.toString(), 'started\n');
    const next = await run('echo after');
    assert.equal(next.stdout.toString(), 'after\n');
  });

  it('refuses more than 16 MiB of output with RESOURCE_EXHAUSTED, and the shell stays usable', async () => {
    await assert.rejects(
      run('yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', { timeoutMs: 60_000 }),
      (err: unknown) => err instanceof JigletError && err.code === 'JIGLET_E_RESOURCE_EXHAUSTED',
    );
    assert.equal((await run('echo fine')).stdout.toString(), 'fine\n');
  });

  it('works with echo off (postLogin stty -echo)', async () => {
    const quiet = await startPtyShell(LOGIN);
    try {
      const s = new ShellSession('box', settings({ postLogin: ['stty -echo'] }));
      assert.equal(await s.ready(quiet.channel, deadline()), true);
      const r = await s.run(quiet.channel, { command: 'echo quiet; exit 3', timeoutMs: 20_000 }, deadline());
      assert.equal(r.stdout.toString(), 'quiet\n');
      assert.equal(r.exitCode, 3);
    } finally {
      await quiet.close();
    }
  });

  it('says why a login fails', async () => {
    const wrong = await startPtyShell(LOGIN);
    try {
      const s = new ShellSession('box', settings({ password: () => 'wrong' }));
      await assert.rejects(s.ready(wrong.channel, deadline(10_000)), /logging in on box as root failed/);
    } finally {
      await wrong.close();
    }
  });
});

describe('exec markers', () => {
  it('never appear literally in the typed line', () => {
    const line = execLine('0123456789ab', 'echo JXB_0123456789ab', true);
    assert.ok(!line.replace('echo JXB_0123456789ab', '').includes('JXB_0123456789ab'));
    assert.ok(!line.includes('JXE_0123456789ab'));
  });

  it('are found across split reads, and the echo is not taken for them', () => {
    const p = new ExecParser('0123456789ab');
    const text = `${execLine('0123456789ab', 'echo hi', true).replace('\n', '\r\n')}JXB_0123456789ab\r\nhi\r\n\r\nJXE_0123456789ab:0\r\n# `;
    let out: ReturnType<ExecParser['push']>;
    for (const ch of text) out = p.push(Buffer.from(ch, 'latin1')) ?? out;
    assert.equal(out?.stdout.toString(), 'hi\n');
    assert.equal(out?.exitCode, 0);
  });
});

describe("exec engine on the QEMU DUT's console shell (a read/eval loop in canonical mode)", function () {
  this.timeout(60_000);
  let shell: PtyShell;
  let session: ShellSession;
  const script = new URL('../../fixtures/qemu/console-shell.sh', import.meta.url).pathname;

  before(async () => {
    shell = await startPtyShell(`exec sh ${script}`);
    session = new ShellSession('qdut', settings());
  });
  after(async () => shell.close());

  const run = async (command: string, timeoutMs = 20_000) => {
    await session.ready(shell.channel, deadline());
    return session.run(shell.channel, { command, timeoutMs }, deadline(timeoutMs));
  };

  it('runs commands, gives back exit codes, and survives a timeout', async () => {
    assert.equal((await run('echo hi')).stdout.toString(), 'hi\n');
    assert.equal((await run('exit 42')).exitCode, 42);
    assert.equal((await run('printf \'%s\\n\' "$HOME"')).exitCode, 0);
    const slow = await run('sleep 60', 1000);
    assert.equal(slow.exitCode, 124);
    assert.equal((await run('echo back')).stdout.toString(), 'back\n');
  });
});
