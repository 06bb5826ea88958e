/**
 * One interactive SSH session (DutAccessService.Ssh): the first message opens a shell or a
 * command on the DUT's SSH connection, with a pty if asked; keystrokes, window sizes and the end
 * of input follow. Output goes back with backpressure both ways (a client that stops reading
 * pauses the channel, a DUT that stops reading pauses the client). The session ends when the
 * DUT's side closes (its exit status is the last message), when the client goes away, or when
 * the DUT is powered (the connection drops: the message says so).
 */
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ClientChannel, PseudoTtyOptions } from 'ssh2';
import type { SshOpen, SshRequest, SshResponse } from '../../../protocol/gen/jiglet/v1/dut_access.js';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { DutSsh } from '../jig/dut-ssh.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { type ChannelExit, watchExit } from '../jig/ssh-exec.js';
import { leaseOf } from '../leases/lease-header.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { abortWhenClientGone, statusFor } from './respond.js';

/** How long opening a session may wait for the DUT's SSH server (it may be booting). */
const OPEN_TIMEOUT_MS = 60_000;
/** Largest keystroke message. */
const MAX_INPUT = 64 * 1024;
/** Longest command line a session may run. */
const MAX_COMMAND = 64 * 1024;
/** What a terminal size may be. */
const MAX_DIMENSION = 10_000;

/** Serves one Ssh call. */
export function sshSession(
  call: ServerDuplexStream<SshRequest, SshResponse>,
  jig: JigRuntime,
  leases: LeaseManager,
  log: Logger,
): void {
  const { controller, dispose } = abortWhenClientGone(call);
  let channel: ClientChannel | undefined;
  let give: (() => void) | undefined;
  let opening = false;
  let finished = false;

  const finish = (err?: unknown): void => {
    if (finished) return;
    finished = true;
    call.off('data', onData);
    channel?.close();
    give?.();
    dispose();
    controller.abort();
    if (call.cancelled || call.destroyed) return;
    if (err === undefined) call.end();
    else call.emit('error', statusFor(log, 'Ssh', err));
  };

  /** Sends output; a client that stops reading pauses the DUT's side until it drains. */
  const forward = (source: NodeJS.ReadableStream, msg: (bytes: Buffer) => SshResponse) => (bytes: Buffer) => {
    if (finished) return;
    if (!call.write(msg(bytes))) {
      source.pause();
      call.once('drain', () => source.resume());
    }
  };

  const open = async (msg: SshOpen): Promise<void> => {
    const who = identityOf(call);
    const dut = jig.get(msg.dut);
    const ssh = jig.ssh(dut.dut.name);
    leases.check(dut.dut.name, leaseOf(call), who);
    if (msg.command.length > MAX_COMMAND)
      throw invalidArgument(`a session's command is at most ${MAX_COMMAND} bytes`);
    give = ssh.takeChannel();
    const { channel: opened, exit: exitOf } = await ssh.openChannel(
      AbortSignal.any([AbortSignal.timeout(OPEN_TIMEOUT_MS), controller.signal]),
      (client) => openChannel(ssh, client, msg),
    );
    if (finished) {
      opened.close();
      return;
    }
    channel = opened;
    opened.on(
      'data',
      forward(opened, (stdout) => ({ stdout })),
    );
    opened.stderr.on(
      'data',
      forward(opened.stderr, (stderr) => ({ stderr })),
    );
    opened.once('close', () => {
      if (finished) return;
      const exit = exitOf();
      if (!exit)
        call.write({
          stderr: Buffer.from(
            `\r\n[jiglet: the SSH connection to ${dut.dut.name} ended (was it powered or rebooted?)]\r\n`,
          ),
        });
      call.write({ exit: { exitCode: exit?.code ?? -1, signal: exit?.signal ?? '' } });
      finish();
    });
    log.info(
      { dut: dut.dut.name, by: who.name, pty: msg.pty, command: msg.command.slice(0, 200) },
      'SSH session opened',
    );
  };

  const onData = (msg: SshRequest): void => {
    try {
      if (!channel && !opening) {
        if (!msg.open) throw invalidArgument('the first message of an SSH session opens it (name the DUT)');
        opening = true;
        call.pause();
        open(msg.open).then(
          () => call.resume(),
          (err: unknown) => finish(err),
        );
        return;
      }
      if (msg.open) throw invalidArgument('this SSH session is already open; send keystrokes as input');
      if (!channel) throw invalidArgument('wait for the session to open before sending input');
      if (msg.resize) {
        const { rows, cols } = checkedSize(msg.resize);
        channel.setWindow(rows, cols, 0, 0);
      } else if (msg.eof) {
        channel.end();
      } else if (msg.input) {
        if (msg.input.length > MAX_INPUT)
          throw invalidArgument(`an SSH session's input message holds at most ${MAX_INPUT} bytes`);
        if (!channel.write(Buffer.from(msg.input))) {
          call.pause();
          channel.once('drain', () => call.resume());
        }
      }
    } catch (err) {
      finish(err);
    }
  };

  call.on('data', onData);
  call.once('end', () => {
    // The client closed its side: the DUT's side gets end of input, and the session runs to its end.
    if (channel) channel.end();
    else finish();
  });
  controller.signal.addEventListener('abort', () => finish(), { once: true });
}

function checkedSize(size: { rows: number; cols: number }): { rows: number; cols: number } {
  if (size.rows > MAX_DIMENSION || size.cols > MAX_DIMENSION)
    throw invalidArgument(`a terminal is at most ${MAX_DIMENSION} rows and columns`);
  return { rows: size.rows || 24, cols: size.cols || 80 };
}

function openChannel(
  ssh: DutSsh,
  client: import('ssh2').Client,
  msg: SshOpen,
): Promise<{ channel: ClientChannel; exit: () => ChannelExit | undefined }> {
  const pty: PseudoTtyOptions | undefined = msg.pty
    ? { ...checkedSize(msg.size ?? { rows: 24, cols: 80 }), term: msg.term || 'xterm-256color' }
    : undefined;
  return new Promise((resolve, reject) => {
    const done = (error: Error | undefined, channel: ClientChannel): void => {
      if (error)
        reject(
          new JigletError(
            'JIGLET_E_UNAVAILABLE',
            `could not open a session on ${ssh.endpoint}: ${error.message}`,
          ),
        );
      // Watched at once: a short command's exit status can come with the reply (watchExit).
      else resolve({ channel, exit: watchExit(channel) });
    };
    if (msg.command) {
      if (pty) client.exec(msg.command, { pty }, done);
      else client.exec(msg.command, done);
    } else if (pty) client.shell(pty, done);
    else client.shell(false, done);
  });
}
