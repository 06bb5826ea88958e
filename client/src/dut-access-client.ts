/**
 * The DUT-access half of the client library: interactive SSH sessions on a DUT, and copying
 * files to and from it (over SSH with SFTP, or over its serial console), each checked with
 * SHA-256 end to end. Reached as `client.dut`.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { ChannelCredentials, Client, Interceptor } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import {
  type CopyDone,
  type CopyFromDutResponse,
  type CopyToDutResponse,
  DutAccessServiceClient,
  type ForgetHostKeyResponse,
  type SshResponse,
} from '../../protocol/gen/jiglet/v1/dut_access.js';
import { JigletError } from '../../protocol/src/errors.js';
import { fromGrpcError } from '../../protocol/src/status.js';
import { type ExecTransport, execViaOf, transportOf } from './jig-client.js';
import { callOptions, unaryCall } from './unary-call.js';

/** Largest data message sent (the agent accepts up to 1 MiB). */
const PIECE_BYTES = 256 * 1024;

/** What a copy moved. */
export interface CopyReport {
  bytes: number;
  /** SHA-256 (hex) of the file, as the DUT computed it and as the client checked it. */
  sha256: string;
  durationMs: number;
  via: ExecTransport;
}

export interface CopyOptions {
  /** SSH or serial; default: SSH when the DUT has an `ssh:` section, else serial. */
  via?: ExecTransport;
  /** How long the whole copy may take (default 10 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What to open on the DUT. */
export interface SshOptions {
  /** A command instead of the login shell. */
  command?: string;
  /** A pseudo-terminal, with this size and TERM. */
  pty?: { rows: number; cols: number; term?: string };
}

/** An open SSH session. */
export interface SshSession {
  /** Output as it comes: stdout and stderr pieces. */
  output: AsyncIterable<{ stream: 'stdout' | 'stderr'; data: Buffer }>;
  /** Resolves with how the session ended, once it has. */
  exited: Promise<{ exitCode: number; signal: string }>;
  write(data: Buffer | string): Promise<void>;
  resize(rows: number, cols: number): void;
  /** Ends the session's input (the DUT's side sees end of file). */
  endInput(): void;
  /** Ends the session now. */
  close(): void;
}

/** The DutAccessService client. */
export class DutAccessClient {
  readonly #stub: DutAccessServiceClient;

  constructor(
    server: string,
    creds: ChannelCredentials,
    channel: ReturnType<Client['getChannel']>,
    interceptors: Interceptor[] = [],
  ) {
    this.#stub = new DutAccessServiceClient(server, creds, { channelOverride: channel, interceptors });
  }

  /**
   * Writes `data` (`size` bytes, as pieces) to `path` on the DUT; resolves once the DUT's
   * SHA-256 of the file matched the bytes sent and the file is in place.
   */
  async copyTo(
    dut: string,
    path: string,
    data: AsyncIterable<Buffer> | Buffer,
    size: number,
    opts: CopyOptions & { mode?: number } = {},
  ): Promise<CopyReport> {
    const hash = createHash('sha256');
    const response = new Promise<CopyToDutResponse>((resolve, reject) => {
      const call = this.#stub.copyToDut(new Metadata(), callOptions(deadlineOf(opts)), (err, value) =>
        err ? reject(fromGrpcError(err)) : resolve(value as CopyToDutResponse),
      );
      const onAbort = (): void => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      call.once('status', () => opts.signal?.removeEventListener('abort', onAbort));
      (async () => {
        call.write({
          open: {
            dut,
            path,
            size: BigInt(size),
            mode: opts.mode ?? 0,
            via: execViaOf(opts.via),
            timeoutMs: opts.timeoutMs ?? 0,
          },
        });
        for await (const chunk of Buffer.isBuffer(data) ? [data] : data) {
          for (let at = 0; at < chunk.length; at += PIECE_BYTES) {
            const piece = chunk.subarray(at, at + PIECE_BYTES);
            hash.update(piece);
            if (!call.write({ data: piece })) await once(call, 'drain');
          }
        }
        call.end();
      })().catch((error: unknown) => {
        call.cancel();
        reject(error);
      });
    });
    const { done } = await response;
    const report = reportOf(done);
    const sent = hash.digest('hex');
    if (report.sha256 !== sent)
      throw new JigletError(
        'JIGLET_E_DATA_LOSS',
        `the DUT has SHA-256 ${report.sha256} for ${path}, the bytes sent ${sent}`,
      );
    return report;
  }

  /** Reads `path` from the DUT; `write` takes each piece; resolves once the SHA-256 of what arrived matched the DUT's. */
  async copyFrom(
    dut: string,
    path: string,
    write: (piece: Buffer) => Promise<void> | void,
    opts: CopyOptions = {},
  ): Promise<CopyReport> {
    const call = this.#stub.copyFromDut(
      { dut, path, via: execViaOf(opts.via), timeoutMs: opts.timeoutMs ?? 0 },
      new Metadata(),
      callOptions(deadlineOf(opts)),
    );
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const hash = createHash('sha256');
    let done: CopyDone | undefined;
    try {
      for await (const msg of call as AsyncIterable<CopyFromDutResponse>) {
        if (msg.data) {
          const piece = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
          hash.update(piece);
          await write(piece);
        } else if (msg.done) done = msg.done;
      }
    } catch (err) {
      throw fromGrpcError(err as Error);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
    if (!done)
      throw new JigletError(
        'JIGLET_E_INTERNAL',
        `the agent ended the copy of ${path} without saying it was done`,
      );
    const report = reportOf(done);
    const got = hash.digest('hex');
    if (report.sha256 !== got)
      throw new JigletError(
        'JIGLET_E_DATA_LOSS',
        `${path} on ${dut} has SHA-256 ${report.sha256}, the bytes received ${got}: copy it again`,
      );
    return report;
  }

  /** Opens an SSH session on the DUT (a login shell, or a command). */
  async ssh(dut: string, opts: SshOptions = {}): Promise<SshSession> {
    // No deadline: a session lasts as long as the engineer works in it.
    const call = this.#stub.ssh(new Metadata(), {});
    const failed = new Promise<never>((_, reject) =>
      call.once('error', (err: Error) => reject(fromGrpcError(err))),
    );
    failed.catch(() => undefined);
    let exit: { exitCode: number; signal: string } | undefined;
    call.write({
      open: {
        dut,
        command: opts.command ?? '',
        pty: opts.pty !== undefined,
        size: opts.pty ? { rows: opts.pty.rows, cols: opts.pty.cols } : undefined,
        term: opts.pty?.term ?? '',
      },
    });
    const iterator = (call as AsyncIterable<SshResponse>)[Symbol.asyncIterator]();
    let settle: (value: { exitCode: number; signal: string }) => void = () => undefined;
    const exited = new Promise<{ exitCode: number; signal: string }>((resolve) => {
      settle = resolve;
    });
    const output = (async function* () {
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          const msg = next.value;
          if (msg.stdout) yield { stream: 'stdout' as const, data: Buffer.from(msg.stdout) };
          else if (msg.stderr) yield { stream: 'stderr' as const, data: Buffer.from(msg.stderr) };
          else if (msg.exit) exit = { exitCode: msg.exit.exitCode, signal: msg.exit.signal };
        }
      } catch (err) {
        throw fromGrpcError(err as Error);
      } finally {
        settle(exit ?? { exitCode: -1, signal: '' });
      }
    })();
    return {
      output,
      exited,
      async write(data) {
        const input = Buffer.isBuffer(data) ? data : Buffer.from(data);
        if (!call.write({ input })) await Promise.race([once(call, 'drain'), failed]);
      },
      resize(rows, cols) {
        call.write({ resize: { rows, cols } });
      },
      endInput() {
        call.write({ eof: true });
      },
      close() {
        call.cancel();
      },
    };
  }

  /** Makes the agent forget the DUT's learnt SSH host key (admin); resolves with its fingerprint ('' if none). */
  async forgetHostKey(dut: string): Promise<string> {
    const res = await unaryCall<ForgetHostKeyResponse>((cb) =>
      this.#stub.forgetHostKey({ dut }, new Metadata(), callOptions(), cb),
    );
    return res.fingerprint;
  }
}

function deadlineOf(opts: CopyOptions): number {
  // The agent ends the copy at its timeout; the call's own deadline leaves it time to say so.
  return (opts.timeoutMs ?? 10 * 60_000) + 60_000;
}

function reportOf(done: CopyDone | undefined): CopyReport {
  if (!done) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered a copy without its result');
  return {
    bytes: Number(done.bytes),
    sha256: done.sha256,
    durationMs: done.durationMs,
    via: transportOf(done.via),
  };
}
