import { abortOnStop } from './jig-commands.js';
import { connect } from './job-commands.js';
import type { SshFlags } from './register/dut-shell-commands.js';
import { writeOut } from './write-out.js';

/** The agent refuses session messages larger than this. */
const MAX_INPUT_MESSAGE = 64 * 1024;

export async function sshCommand(flags: SshFlags, words: string[]): Promise<number> {
  const stdin = process.stdin;
  // As ssh(1) does: the words joined by spaces are one command line for the DUT's shell.
  const command = words.length === 0 ? undefined : words.join(' ');
  const pty = flags.tty === true || (command === undefined && stdin.isTTY === true);
  const raw = pty && stdin.isTTY === true;
  const client = connect(flags);
  const stop = new AbortController();
  const undo = abortOnStop(stop);
  const restoreTty = (): void => {
    if (stdin.isRaw) stdin.setRawMode(false);
  };
  process.once('exit', restoreTty);
  const onResize = (): void => session?.resize(process.stdout.rows ?? 24, process.stdout.columns ?? 80);
  let session: Awaited<ReturnType<typeof client.dut.ssh>> | undefined;
  try {
    session = await client.dut.ssh(flags.dut, {
      command,
      pty: pty
        ? { rows: process.stdout.rows ?? 24, cols: process.stdout.columns ?? 80, term: process.env.TERM }
        : undefined,
    });
    const open = session;
    if (raw) stdin.setRawMode(true);
    process.stdout.on('resize', onResize);
    stop.signal.addEventListener('abort', () => open.close(), { once: true });
    const input = (async () => {
      for await (const piece of stdin as AsyncIterable<Buffer>) {
        for (let at = 0; at < piece.length; at += MAX_INPUT_MESSAGE)
          await open.write(piece.subarray(at, at + MAX_INPUT_MESSAGE));
      }
      open.endInput();
    })();
    input.catch(() => undefined);
    for await (const { stream, data } of open.output)
      await writeOut(stream === 'stdout' ? process.stdout : process.stderr, data);
    const { exitCode, signal } = await open.exited;
    if (signal) process.stderr.write(`jigctl: the session on ${flags.dut} was ended by SIG${signal}\n`);
    return exitCode < 0 ? 255 : exitCode;
  } finally {
    restoreTty();
    process.off('exit', restoreTty);
    process.stdout.off('resize', onResize);
    undo();
    // A stdin still open (a terminal) would keep us alive.
    stdin.destroy();
    client.close();
  }
}
