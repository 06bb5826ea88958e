/**
 * `jigctl exec` and `jigctl dut goto`: run a command on a DUT's shell (stdout exactly as the
 * command printed it, jigctl's exit code the DUT's: 0-255, 124 on timeout, as timeout(1)), and
 * bring a DUT to a state, one line per step taken.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { ExecTransport } from '../jig-client.js';
import { connect } from './job-commands.js';
import { parseDuration } from './parse-units.js';
import type { GotoFlags } from './register/dut-commands.js';
import type { ExecFlags } from './register/dut-shell-commands.js';
import { writeOut } from './write-out.js';

/** Most stdin an interactive exec types (the agent's own limit). */
const MAX_STDIN = 64 * 1024;
/** Most stdin an exec over SSH sends (the agent's own limit). */
const MAX_SSH_STDIN = 4 * 1024 * 1024;

/**
 * `jigctl exec --dut D [--timeout 30s] [-i] -- CMD [ARGS…]`. One word after `--` is a shell
 * command line (`jigctl exec --dut D -- 'ls | wc -l'`); several are a program and its arguments,
 * each quoted for the DUT's shell. Kernel lines that arrived meanwhile go to stderr.
 */
export async function execCommand(flags: ExecFlags, words: string[]): Promise<number> {
  if (words.length === 0)
    throw invalidArgument('name the command after --: jigctl exec --dut D -- CMD [ARGS…]');
  if (flags.via !== undefined && flags.via !== 'serial' && flags.via !== 'ssh')
    throw invalidArgument(`--via ${flags.via}: expected serial (the console, the default) or ssh`);
  const via = flags.via as ExecTransport | undefined;
  const timeoutMs = flags.timeout === undefined ? 30_000 : parseDuration('--timeout', flags.timeout);
  if (timeoutMs <= 0) throw invalidArgument('--timeout must be longer than 0');
  const stdin = flags.interactive ? await readStdin(via === 'ssh' ? MAX_SSH_STDIN : MAX_STDIN) : undefined;
  const client = connect(flags);
  try {
    const r = await client.jig.exec(flags.dut, words.length === 1 ? words[0]! : words, {
      timeoutMs,
      interactive: flags.interactive ?? false,
      stdin,
      keepKernelLines: flags.keepKernelLines ?? false,
      via,
    });
    if (flags.output === 'json') {
      const report = {
        exitCode: r.exitCode,
        stdout: r.stdout.toString('utf8'),
        stderr: r.stderr.toString('utf8'),
        via: r.via,
        signal: r.signal || undefined,
        kernelLines: r.kernelLines,
        durationMs: r.durationMs,
        timedOut: r.timedOut,
        loggedIn: r.loggedIn,
      };
      await out(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      await out(r.stdout);
      if (r.stderr.length > 0) await writeOut(process.stderr, r.stderr);
      for (const line of r.kernelLines) process.stderr.write(`jigctl: kernel: ${line}\n`);
      if (r.timedOut)
        process.stderr.write(
          `jigctl: the command ran past ${flags.timeout ?? '30s'} and was interrupted (${r.via === 'ssh' ? 'SIGINT, then SIGKILL' : 'Ctrl-C'})\n`,
        );
      else if (r.signal)
        process.stderr.write(`jigctl: the command was killed by SIG${r.signal} on ${flags.dut}\n`);
    }
    // A command killed by a signal exits 128+N in a shell; the number is the DUT's, so 255 says "signal".
    return r.exitCode < 0 ? 255 : r.exitCode;
  } finally {
    client.close();
  }
}

/** `jigctl dut goto D off|booted|shell [--image IMG]`: prints the steps taken. */
export async function gotoCommand(flags: GotoFlags): Promise<number> {
  const timeoutMs = flags.timeout === undefined ? undefined : parseDuration('--timeout', flags.timeout);
  const client = connect(flags);
  try {
    const imageSha256 = flags.image ? (await client.images.upload(flags.image)).sha256 : undefined;
    const r = await client.jig.gotoState(flags.dut, flags.state, { imageSha256, timeoutMs });
    if (flags.output === 'json') {
      await out(`${JSON.stringify({ dut: flags.dut, state: flags.state, ...r }, null, 2)}\n`);
    } else {
      for (const s of r.steps)
        await out(`${flags.dut}: ${s.name}${s.detail ? ` (${s.detail})` : ''} ${s.durationMs} ms\n`);
      await out(`${flags.dut}: ${flags.state} in ${r.durationMs} ms\n`);
    }
    return 0;
  } finally {
    client.close();
  }
}

function out(text: string | Buffer): Promise<void> {
  return writeOut(process.stdout, typeof text === 'string' ? Buffer.from(text) : text);
}

async function readStdin(max: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of process.stdin) {
    size += (piece as Buffer).length;
    if (size > max)
      throw invalidArgument(
        max === MAX_STDIN
          ? `-i types stdin on the console: at most ${max} bytes (over SSH, --via ssh: 4 MiB)`
          : `-i sends at most ${max} bytes of stdin over SSH: copy bigger input to the DUT first (jigctl cp)`,
      );
    pieces.push(piece as Buffer);
  }
  return Buffer.concat(pieces);
}
