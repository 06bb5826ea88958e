/**
 * Exec over SSH: the command runs in its own exec channel, stdout and stderr apart, and its real
 * exit status comes back. The command is wrapped so the agent learns its process group first
 * (SSH servers put each exec in a session of its own): at the deadline the whole group gets
 * SIGINT, then SIGKILL, through a second channel, because neither dropbear nor every OpenSSH
 * passes a "signal" request on to a command's children.
 */
import type { Client, ClientChannel } from 'ssh2';
import { JigletError } from '../../../protocol/src/errors.js';
import type { DutSsh } from './dut-ssh.js';
import { newNonce, shellQuote } from './exec-protocol.js';

/** Most bytes of stdout, and of stderr, an exec keeps; the rest is counted and said. */
export const MAX_SSH_EXEC_OUTPUT = 8 * 1024 * 1024;
/** How long the command's group has after SIGINT before SIGKILL. */
const INTERRUPT_GRACE_MS = 2000;
/** How long the kill itself may take before the channel is just closed. */
const KILL_TIMEOUT_MS = 5000;
/** timeout(1)'s exit code, as exec over serial gives. */
const TIMED_OUT_EXIT = 124;

export interface SshExecRequest {
  command: string;
  timeoutMs: number;
  /** Bytes for the command's stdin, then end of input (empty: stdin is at its end at once). */
  stdin: Buffer;
}

export interface SshExecResult {
  exitCode: number;
  /** The signal that ended the command ("KILL"), if one did. */
  signal: string;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

/** Runs `req` on the DUT over its SSH connection; `signal` (the client went away) ends it like the timeout. */
export async function sshExec(
  ssh: DutSsh,
  req: SshExecRequest,
  signal?: AbortSignal,
): Promise<SshExecResult> {
  const give = ssh.takeChannel();
  const timeout = AbortSignal.timeout(req.timeoutMs);
  const deadline = signal ? AbortSignal.any([timeout, signal]) : timeout;
  try {
    return await runWrapped(ssh, req, deadline);
  } finally {
    give();
  }
}

/** A channel's output, kept up to MAX_SSH_EXEC_OUTPUT. */
class Kept {
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  dropped = 0;
  add(chunk: Buffer): void {
    const room = MAX_SSH_EXEC_OUTPUT - this.#kept;
    if (room <= 0) {
      this.dropped += chunk.length;
      return;
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.#chunks.push(part);
    this.#kept += part.length;
    this.dropped += chunk.length - part.length;
  }
  bytes(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

/** How a command's channel ended: its exit status, or the signal that ended it. */
export interface ChannelExit {
  code: number;
  signal: string;
}

/**
 * Records a channel's exit status from now on; the returned function reads it. Call it inside
 * ssh2's exec or shell callback, not after awaiting it: a short command's exit status can come in
 * the same read as the server's reply to the request (dropbear on a busy QEMU DUT did, ~1 exec in
 * 20), and ssh2 emits it at once, before a promise's continuation runs; it is not emitted again.
 */
export function watchExit(channel: ClientChannel): () => ChannelExit | undefined {
  let exit: ChannelExit | undefined;
  channel.once('exit', (code: number | null, signalName?: string) => {
    exit = { code: code ?? -1, signal: signalName ?? '' };
  });
  return () => exit;
}

/** An exec channel, with its exit status watched from the moment it opened. */
interface OpenedExec {
  channel: ClientChannel;
  exit: () => ChannelExit | undefined;
}

function openExec(client: Client, command: string): Promise<OpenedExec> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, channel) =>
      error ? reject(error) : resolve({ channel, exit: watchExit(channel) }),
    );
  });
}

async function runWrapped(ssh: DutSsh, req: SshExecRequest, deadline: AbortSignal): Promise<SshExecResult> {
  const marker = `jiglet-exec-${newNonce()}`;
  // The login shell prints the marker and its pid (its session's process group), then runs the
  // command exactly as typed with `eval`: a syntax error in it is that shell's, exit code 2. Not
  // `exec $SHELL -c`: a second shell's start cost ~5.5 ms of an 18 ms exec on the QEMU DUT.
  const wrapped = `printf '%s %s\\n' ${marker} "$$"; eval ${shellQuote(req.command)}`;
  let channel: ClientChannel;
  let exitOf: () => ChannelExit | undefined;
  let client: Client | undefined;
  try {
    ({ channel, exit: exitOf } = await ssh.openChannel(deadline, (c) => {
      client = c;
      return openExec(c, wrapped);
    }));
  } catch (error) {
    if (error instanceof JigletError) throw error;
    throw new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `could not start the command over SSH: ${(error as Error).message}`,
    );
  }
  const stdout = new Kept();
  const stderr = new Kept();
  let head: Buffer | undefined = Buffer.alloc(0);
  let pid: number | undefined;
  channel.on('data', (chunk: Buffer) => {
    if (head === undefined) return stdout.add(chunk);
    // The first line is the wrapper's; everything after it is the command's.
    head = Buffer.concat([head, chunk]);
    const newline = head.indexOf(0x0a);
    if (newline < 0 && head.length < 256) return;
    const line = head.subarray(0, Math.max(newline, 0)).toString('latin1');
    const match = new RegExp(`^${marker} (\\d+)$`).exec(line);
    if (match) pid = Number(match[1]);
    const rest = match ? head.subarray(newline + 1) : head;
    head = undefined;
    if (rest.length > 0) stdout.add(rest);
  });
  channel.stderr.on('data', (chunk: Buffer) => stderr.add(chunk));
  if (req.stdin.length > 0) channel.write(req.stdin);
  channel.end();

  const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
  let timedOut = false;
  const onDeadline = (): void => {
    timedOut = true;
    void interrupt(client!, pid).finally(() => channel.close());
  };
  deadline.addEventListener('abort', onDeadline, { once: true });
  try {
    await closed;
  } finally {
    deadline.removeEventListener('abort', onDeadline);
  }
  const exit = exitOf() ?? { code: -1, signal: '' };
  const out = stdout.bytes();
  const err = Buffer.concat([stderr.bytes(), droppedNote(stdout.dropped, stderr.dropped)]);
  if (timedOut) return { exitCode: TIMED_OUT_EXIT, signal: exit.signal, stdout: out, stderr: err, timedOut };
  return { exitCode: exit.signal ? -1 : exit.code, signal: exit.signal, stdout: out, stderr: err, timedOut };
}

function droppedNote(outDropped: number, errDropped: number): Buffer {
  if (outDropped === 0 && errDropped === 0) return Buffer.alloc(0);
  return Buffer.from(
    `\n[jiglet: kept the first ${MAX_SSH_EXEC_OUTPUT} bytes of each stream; ${outDropped} more of stdout and ${errDropped} more of stderr were not kept: write big output to a file on the DUT and copy it (jigctl cp)]\n`,
  );
}

/** SIGINT to the command's process group, then SIGKILL after a grace period, over a channel of its own. */
async function interrupt(client: Client, pid: number | undefined): Promise<void> {
  if (pid === undefined) return;
  const script =
    `kill -INT -${pid} 2>/dev/null || kill -INT ${pid} 2>/dev/null; ` +
    `i=0; while [ $i -lt ${INTERRUPT_GRACE_MS / 100} ] && kill -0 ${pid} 2>/dev/null; do sleep 0.1; i=$((i+1)); done; ` +
    `kill -KILL -${pid} 2>/dev/null || kill -KILL ${pid} 2>/dev/null; true`;
  try {
    const { channel } = await openExec(client, script);
    channel.resume();
    channel.stderr.resume();
    channel.end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, KILL_TIMEOUT_MS);
      channel.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  } catch {
    // The connection is gone: the server ends the command's channel with it.
  }
}
