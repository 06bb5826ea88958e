/**
 * Copying files to and from a DUT over its SSH connection, with SFTP. A file sent goes to a
 * temporary name beside its target and is renamed over it only once the DUT's `sha256sum` of it
 * matches the bytes the agent received, so a copy cut short or garbled never leaves a half file
 * under the real name. A file fetched is checked against the DUT's `sha256sum` at the end.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Client, SFTPWrapper } from 'ssh2';
import { JigletError } from '../../../protocol/src/errors.js';
import {
  type CopyResult,
  copyFailed,
  parseSha256Output,
  remoteSha256Command,
  temporaryPathFor,
} from './copy-paths.js';
import type { DutSsh } from './dut-ssh.js';
import { newNonce, shellQuote } from './exec-protocol.js';
import { sshExec } from './ssh-exec.js';

/** SFTP read size: ssh2 asks for this much per request, several requests in flight. */
const SFTP_CHUNK = 64 * 1024;
/** How long an ended SFTP session, or a read file's handle, may take to close before the copy goes on. */
const SFTP_CLOSE_WAIT_MS = 5000;

function openSftp(client: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) =>
    client.sftp((error, sftp) => (error ? reject(error) : resolve(sftp))),
  );
}

/** An SFTP session on the DUT's connection, for the life of `work`. */
async function withSftp<T>(
  ssh: DutSsh,
  dut: string,
  signal: AbortSignal,
  work: (sftp: SFTPWrapper, client: Client) => Promise<T>,
): Promise<T> {
  const give = ssh.takeChannel();
  try {
    let sftp: SFTPWrapper;
    let client: Client | undefined;
    try {
      sftp = await ssh.openChannel(signal, (c) => {
        client = c;
        return openSftp(c);
      });
    } catch (error) {
      if (error instanceof JigletError) throw error;
      throw new JigletError(
        'JIGLET_E_FAILED_PRECONDITION',
        `${dut}'s SSH server offers no SFTP (${(error as Error).message}): install an sftp-server on the DUT, or copy over serial (--via serial)`,
      );
    }
    // Watched from the start: a session the connection's end already closed is not waited for.
    const closed = once(sftp, 'close').catch(() => undefined);
    const onAbort = (): void => sftp.end();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await work(sftp, client!);
    } finally {
      signal.removeEventListener('abort', onAbort);
      await endSftp(sftp, closed);
    }
  } finally {
    give();
  }
}

/** `closed`, or SFTP_CLOSE_WAIT_MS, whichever comes first. */
async function closedOrLate(closed: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, SFTP_CLOSE_WAIT_MS);
  });
  try {
    await Promise.race([closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ends an SFTP session and waits (bounded) until the DUT has closed its channel, so the next
 * channel (the checksum's exec) opens on a quiet connection. Dropbear (2022.83, the QEMU DUT's)
 * closed that next channel unanswered ("Unable to exec": the checksum after every copy from the
 * DUT failed) and then dropped the connection when the session was ended with a request still
 * in flight; waiting for the handle's close (copyFromDutOverSsh) or for this close avoided it.
 */
async function endSftp(sftp: SFTPWrapper, closed: Promise<unknown>): Promise<void> {
  sftp.end();
  await closedOrLate(closed);
}

/** The SHA-256 of a file on the DUT, by its own `sha256sum`. */
async function remoteSha256(ssh: DutSsh, dut: string, path: string, signal: AbortSignal): Promise<string> {
  const result = await sshExec(
    ssh,
    { command: remoteSha256Command(path), timeoutMs: 10 * 60_000, stdin: Buffer.alloc(0) },
    signal,
  );
  return parseSha256Output(
    dut,
    path,
    result.exitCode,
    Buffer.concat([result.stdout, result.stderr]).toString('utf8'),
  );
}

/** Runs a short shell command over SSH; a failure is FAILED_PRECONDITION with its stderr. */
async function mustRun(ssh: DutSsh, what: string, command: string, signal: AbortSignal): Promise<void> {
  const result = await sshExec(ssh, { command, timeoutMs: 60_000, stdin: Buffer.alloc(0) }, signal);
  if (result.exitCode !== 0)
    throw copyFailed(
      `${what} failed (exit ${result.exitCode}): ${result.stderr.toString('utf8').trim().slice(0, 500)}`,
    );
}

/**
 * Writes `data` (exactly `size` bytes) to `path` on the DUT with `mode`. `data` is pulled as the
 * DUT takes the bytes: SFTP's window is the backpressure.
 */
export async function copyToDutOverSsh(opts: {
  ssh: DutSsh;
  dut: string;
  path: string;
  mode: number;
  size: number;
  data: AsyncIterable<Buffer>;
  signal: AbortSignal;
}): Promise<CopyResult> {
  const { ssh, dut, path, signal } = opts;
  const temporary = temporaryPathFor(path, newNonce());
  const hash = createHash('sha256');
  let bytes = 0;
  await withSftp(ssh, dut, signal, async (sftp) => {
    const out = sftp.createWriteStream(temporary, { mode: opts.mode });
    const failed = once(out, 'error').then(([error]: unknown[]) => {
      throw sftpError(error, `writing ${temporary} on ${dut}`);
    });
    failed.catch(() => undefined);
    try {
      for await (const chunk of opts.data) {
        bytes += chunk.length;
        if (bytes > opts.size) throw sizeMismatch(opts.size, bytes);
        hash.update(chunk);
        if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
      }
      if (bytes !== opts.size) throw sizeMismatch(opts.size, bytes);
      out.end();
      await Promise.race([once(out, 'close'), failed]);
    } catch (error) {
      out.destroy();
      await removeQuietly(sftp, temporary);
      // events.once() rejects with the stream's own error: that is the SFTP failure, said plainly.
      throw error instanceof JigletError ? error : sftpError(error, `writing ${temporary} on ${dut}`);
    }
  });
  const sent = hash.digest('hex');
  const onDut = await remoteSha256(ssh, dut, temporary, signal).catch(async (error: unknown) => {
    await mustRun(ssh, 'removing the partial copy', `rm -f -- ${shellQuote(temporary)}`, signal).catch(
      () => undefined,
    );
    throw error;
  });
  if (onDut !== sent) {
    await mustRun(ssh, 'removing the bad copy', `rm -f -- ${shellQuote(temporary)}`, signal).catch(
      () => undefined,
    );
    throw new JigletError(
      'JIGLET_E_DATA_LOSS',
      `the copy of ${path} on ${dut} has SHA-256 ${onDut}, the bytes sent ${sent}: it was removed; copy it again`,
    );
  }
  await mustRun(
    ssh,
    `renaming the copy to ${path}`,
    `mv -f -- ${shellQuote(temporary)} ${shellQuote(path)}`,
    signal,
  );
  return { bytes, sha256: onDut };
}

/** Reads `path` from the DUT; `write` takes each piece (and waits while the client is slow). */
export async function copyFromDutOverSsh(opts: {
  ssh: DutSsh;
  dut: string;
  path: string;
  write: (chunk: Buffer) => Promise<void>;
  signal: AbortSignal;
}): Promise<CopyResult> {
  const { ssh, dut, path, signal } = opts;
  const hash = createHash('sha256');
  let bytes = 0;
  await withSftp(ssh, dut, signal, async (sftp) => {
    const input = sftp.createReadStream(path, { highWaterMark: SFTP_CHUNK });
    // 'close' comes once the server answered the handle's close: ending the SFTP channel before
    // that crashes dropbear 2022.83's connection (it asserts on data for a closed channel). An
    // 'error' ends the wait too (the read's own error is reported by the loop below).
    const closed = closedOrLate(once(input, 'close').catch(() => undefined));
    try {
      for await (const chunk of input as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        hash.update(chunk);
        await opts.write(chunk);
      }
      await closed;
    } catch (error) {
      input.destroy();
      if (error instanceof JigletError) throw error;
      throw sftpError(error, `reading ${path} on ${dut}`);
    }
  });
  const got = hash.digest('hex');
  const onDut = await remoteSha256(ssh, dut, path, signal);
  if (onDut !== got)
    throw new JigletError(
      'JIGLET_E_DATA_LOSS',
      `${path} on ${dut} has SHA-256 ${onDut}, the bytes read ${got} (did it change during the copy?): copy it again`,
    );
  return { bytes, sha256: onDut };
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that say what the user did wrong. */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

/** An SFTP failure as a coded error: a missing file or folder, no permission, or another failure. */
function sftpError(error: unknown, what: string): JigletError {
  const code = (error as { code?: unknown }).code;
  const said = (error as Error).message;
  if (code === SFTP_NO_SUCH_FILE)
    return new JigletError('JIGLET_E_NOT_FOUND', `${what} failed: no such file or folder (${said})`);
  if (code === SFTP_PERMISSION_DENIED)
    return new JigletError('JIGLET_E_PERMISSION_DENIED', `${what} failed: the DUT's user may not (${said})`);
  return copyFailed(`${what} failed: ${said}`);
}

function sizeMismatch(expected: number, got: number): JigletError {
  return new JigletError(
    'JIGLET_E_INVALID_ARGUMENT',
    `the copy announced ${expected} bytes and sent ${got > expected ? 'more' : got}: nothing was written`,
  );
}

function removeQuietly(sftp: SFTPWrapper, path: string): Promise<void> {
  return new Promise((resolve) => sftp.unlink(path, () => resolve()));
}
