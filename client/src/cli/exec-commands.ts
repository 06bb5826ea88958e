/**
 * `jigctl exec` and `jigctl dut goto`: run a command on a DUT's shell (stdout exactly as the
 * command printed it, jigctl's exit code the DUT's: 0-255, 124 on timeout, as timeout(1)), and
 * bring a DUT to a state, one line per step taken.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { ConnectionFlags } from '../connection.js';
import type { DutGoalName } from '../jig-client.js';
import { connect } from './job-commands.js';
import { parseDuration } from './parse-units.js';
import { writeOut } from './write-out.js';

/** Most stdin an interactive exec types (the agent's own limit). */
const MAX_STDIN = 64 * 1024;

/** `jigctl exec` flags. */
export interface ExecFlags extends ConnectionFlags {
  dut: string;
  timeout?: string;
  interactive?: boolean;
  keepKernelLines?: boolean;
  via?: string;
  output?: string;
}

/** `jigctl dut goto` flags. */
export interface GotoFlags extends ConnectionFlags {
  dut: string;
  state: DutGoalName;
  image?: string;
  timeout?: string;
  output?: string;
}

/**
 * `jigctl exec --dut D [--timeout 30s] [-i] -- CMD [ARGS…]`. One word after `--` is a shell
 * command line (`jigctl exec --dut D -- 'ls | wc -l'`); several are a program and its arguments,
 * each quoted for the DUT's shell. Kernel lines that arrived meanwhile go to stderr.
 */
export async function execCommand(flags: ExecFlags, words: string[]): Promise<number> {
  if (words.length === 0)
    throw invalidArgument('name the command after --: jigctl exec --dut D -- CMD [ARGS…]');
  if (flags.via !== undefined && flags.via !== 'serial')
    throw invalidArgument(`--via ${flags.via}: only serial is available yet`);
  const timeoutMs = flags.timeout === undefined ? 30_000 : parseDuration('--timeout', flags.timeout);
  if (timeoutMs <= 0) throw invalidArgument('--timeout must be longer than 0');
  const stdin = flags.interactive ? await readStdin() : undefined;
  const client = connect(flags);
  try {
    const r = await client.jig.exec(flags.dut, words.length === 1 ? words[0]! : words, {
      timeoutMs,
      interactive: flags.interactive ?? false,
      stdin,
      keepKernelLines: flags.keepKernelLines ?? false,
    });
    if (flags.output === 'json') {
      const report = {
        exitCode: r.exitCode,
        stdout: r.stdout.toString('utf8'),
        kernelLines: r.kernelLines,
        durationMs: r.durationMs,
        timedOut: r.timedOut,
        loggedIn: r.loggedIn,
      };
      await out(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      await out(r.stdout);
      for (const line of r.kernelLines) process.stderr.write(`jigctl: kernel: ${line}\n`);
      if (r.timedOut)
        process.stderr.write(
          `jigctl: the command ran past ${flags.timeout ?? '30s'} and was interrupted (Ctrl-C)\n`,
        );
    }
    return r.exitCode;
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

async function readStdin(): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of process.stdin) {
    size += (piece as Buffer).length;
    if (size > MAX_STDIN) throw invalidArgument(`-i types stdin on the console: at most ${MAX_STDIN} bytes`);
    pieces.push(piece as Buffer);
  }
  return Buffer.concat(pieces);
}
