/**
 * jiglet.v1.DutAccessService: interactive SSH sessions on a DUT, file copies to and from it (over
 * SSH or its serial console), and forgetting a DUT's learnt host key. The lease is checked here
 * as for every call that acts on a DUT; the SSH connection is the DUT's one (jig/dut-ssh.ts).
 */
import type {
  Metadata,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type {
  CopyDone,
  CopyFromDutRequest,
  CopyFromDutResponse,
  CopyToDutOpen,
  CopyToDutRequest,
  CopyToDutResponse,
  DutAccessServiceServer,
  ForgetHostKeyRequest,
  ForgetHostKeyResponse,
  SshRequest,
  SshResponse,
} from '../../../protocol/gen/jiglet/v1/dut_access.js';
import { ExecVia } from '../../../protocol/gen/jiglet/v1/jig.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { Identity } from '../auth/identity.js';
import { type CopyResult, checkDutPath } from '../jig/copy-paths.js';
import type { DutRuntime } from '../jig/dut-runtime.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { copyFromDutOverSerial, copyToDutOverSerial, MAX_SERIAL_COPY_BYTES } from '../jig/serial-copy.js';
import { copyFromDutOverSsh, copyToDutOverSsh } from '../jig/ssh-copy.js';
import { boundedNumber } from '../jobs/job-spec.js';
import { leaseOf } from '../leases/lease-header.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import { abortWhenClientGone, ByteBoundedWriter, failStream, statusFor, unary } from './respond.js';
import { sshSession } from './ssh-session.js';

/** A copy's timeout when the client names none, and the longest it may ask for. */
const DEFAULT_COPY_MS = 10 * 60_000;
const MAX_COPY_MS = 24 * 3600 * 1000;
/** Largest data message a copy to the DUT accepts. */
const MAX_COPY_PIECE = 1024 * 1024;
/** Bytes of a copy from the DUT in grpc-js and not yet sent before reading the DUT pauses. */
const COPY_OUT_WINDOW = 2 * 1024 * 1024;
/** Piece size of a copy from the DUT over serial (it arrives whole). */
const SERIAL_OUT_PIECE = 256 * 1024;

type Via = 'ssh' | 'serial';
/** What identity and lease are read from. */
type CallOf = { metadata: Metadata } & Parameters<typeof identityOf>[0];

/** The service's handlers. */
export function dutAccessService(jig: JigRuntime, leases: LeaseManager, log: Logger): DutAccessServiceServer {
  /** The DUT, the caller and the transport of a copy, once its lease and path check out. */
  const prepare = (call: CallOf, dutName: string, path: string, via: ExecVia) => {
    const who = identityOf(call);
    const dut = jig.get(dutName);
    checkDutPath(path);
    const chosen = transport(dut, via);
    if (chosen === 'ssh') jig.ssh(dut.dut.name);
    const lease = leases.check(dut.dut.name, leaseOf(call), who);
    return { who, dut, via: chosen, lease: lease?.id };
  };
  const recordCopy = (dut: DutRuntime, who: Identity, detail: string): void =>
    jig.events.publish({
      kind: 'ssh',
      at: Date.now(),
      dut: dut.dut.name,
      change: 'copy',
      detail: `${detail} (by ${who.name})`,
    });

  return {
    ssh: (call: ServerDuplexStream<SshRequest, SshResponse>) => sshSession(call, jig, leases, log),

    copyToDut: (
      call: ServerReadableStream<CopyToDutRequest, CopyToDutResponse>,
      callback: sendUnaryData<CopyToDutResponse>,
    ) => {
      copyToDut(call).then(
        (done) => callback(null, { done }),
        (err: unknown) => callback(statusFor(log, 'CopyToDut', err)),
      );
    },

    copyFromDut: (call: ServerWritableStream<CopyFromDutRequest, CopyFromDutResponse>) => {
      copyFromDut(call).then(
        () => call.end(),
        (err: unknown) => failStream(log, 'CopyFromDut', call, err),
      );
    },

    forgetHostKey: unary(
      log,
      'ForgetHostKey',
      async (call: ServerUnaryCall<ForgetHostKeyRequest, ForgetHostKeyResponse>) => {
        const who = identityOf(call);
        const ssh = jig.ssh(jig.get(call.request.dut).dut.name);
        const fingerprint = ssh.forgetHostKey();
        jig.events.publish({
          kind: 'ssh',
          at: Date.now(),
          dut: call.request.dut,
          change: 'host-key-forgotten',
          detail: `${fingerprint || 'no key'} forgotten by ${who.name}`,
        });
        return { fingerprint };
      },
    ),
  };

  async function copyToDut(
    call: ServerReadableStream<CopyToDutRequest, CopyToDutResponse>,
  ): Promise<CopyDone> {
    const { controller, dispose } = abortWhenClientGone(call);
    // Not the default iterator: at the end of input it destroys the call, which grpc-js then
    // cancels before the answer is sent.
    const messages = call.iterator({ destroyOnReturn: false }) as AsyncIterator<CopyToDutRequest>;
    try {
      const first = await messages.next();
      const open: CopyToDutOpen | undefined = first.done ? undefined : first.value.open;
      if (!open)
        throw invalidArgument('the first message of a copy names the DUT, the path and the size (open)');
      const { who, dut, via, lease } = prepare(call, open.dut, open.path, open.via);
      const size = boundedNumber('size', open.size, Number.MAX_SAFE_INTEGER);
      if (via === 'serial' && size > MAX_SERIAL_COPY_BYTES)
        throw invalidArgument(
          `${size} bytes is more than a copy over serial moves (${MAX_SERIAL_COPY_BYTES}): give ${dut.dut.name} an ssh: section and copy over SSH`,
        );
      const mode = open.mode === 0 ? 0o644 : open.mode;
      if (mode > 0o7777)
        throw invalidArgument(`mode ${mode.toString(8)} is not a file mode (at most 7777, octal)`);
      const signal = copySignal(open.timeoutMs, controller.signal);
      const data = pieces(messages);
      const started = performance.now();
      let result: CopyResult;
      if (via === 'ssh') {
        result = await copyToDutOverSsh({
          ssh: jig.ssh(dut.dut.name),
          dut: dut.dut.name,
          path: open.path,
          mode,
          size,
          data,
          signal,
        });
      } else {
        const chunks: Buffer[] = [];
        let got = 0;
        for await (const chunk of data) {
          got += chunk.length;
          if (got > size) break;
          chunks.push(chunk);
        }
        if (got !== size)
          throw invalidArgument(
            `the copy announced ${size} bytes and sent ${got > size ? 'more' : got}: nothing was written`,
          );
        result = await copyToDutOverSerial(
          { shells: jig.shells, dut, who, lease, signal, deadline: deadlineOf(open.timeoutMs) },
          open.path,
          mode,
          Buffer.concat(chunks),
        );
      }
      const durationMs = Math.round(performance.now() - started);
      recordCopy(
        dut,
        who,
        `copied ${result.bytes} bytes to ${open.path} over ${via} in ${durationMs} ms, sha256 ${result.sha256}`,
      );
      return doneOf(result, durationMs, via);
    } finally {
      dispose();
    }
  }

  async function copyFromDut(
    call: ServerWritableStream<CopyFromDutRequest, CopyFromDutResponse>,
  ): Promise<void> {
    const { request } = call;
    const { who, dut, via, lease } = prepare(call, request.dut, request.path, request.via);
    const { controller, dispose } = abortWhenClientGone(call);
    try {
      const signal = copySignal(request.timeoutMs, controller.signal);
      const writer = new ByteBoundedWriter<CopyFromDutResponse>(call, COPY_OUT_WINDOW);
      const send = async (chunk: Buffer): Promise<void> => {
        if (!writer.write({ data: chunk }, chunk.length)) await writer.drained(signal);
        if (signal.aborted) throw signal.reason ?? new Error('the client went away');
      };
      const started = performance.now();
      let result: CopyResult;
      if (via === 'ssh') {
        result = await copyFromDutOverSsh({
          ssh: jig.ssh(dut.dut.name),
          dut: dut.dut.name,
          path: request.path,
          write: send,
          signal,
        });
      } else {
        const got = await copyFromDutOverSerial(
          { shells: jig.shells, dut, who, lease, signal, deadline: deadlineOf(request.timeoutMs) },
          request.path,
        );
        for (let at = 0; at < got.data.length; at += SERIAL_OUT_PIECE)
          await send(got.data.subarray(at, at + SERIAL_OUT_PIECE));
        result = got;
      }
      const durationMs = Math.round(performance.now() - started);
      writer.write({ done: doneOf(result, durationMs, via) }, 64);
      await writer.settled(signal);
      recordCopy(
        dut,
        who,
        `copied ${result.bytes} bytes from ${request.path} over ${via} in ${durationMs} ms, sha256 ${result.sha256}`,
      );
    } finally {
      dispose();
    }
  }
}

/** The transport a copy takes: SSH when the DUT has it and the caller did not ask for serial. */
function transport(dut: DutRuntime, via: ExecVia): Via {
  if (via === ExecVia.EXEC_VIA_SERIAL) return 'serial';
  if (via === ExecVia.EXEC_VIA_SSH) return 'ssh';
  return dut.dut.ssh ? 'ssh' : 'serial';
}

function deadlineOf(timeoutMs: number): number {
  return (
    Date.now() +
    (timeoutMs === 0 ? DEFAULT_COPY_MS : boundedNumber('timeout_ms', BigInt(timeoutMs), MAX_COPY_MS))
  );
}

function copySignal(timeoutMs: number, clientGone: AbortSignal): AbortSignal {
  return AbortSignal.any([AbortSignal.timeout(Math.max(1, deadlineOf(timeoutMs) - Date.now())), clientGone]);
}

/** The data messages after the first, checked. */
async function* pieces(messages: AsyncIterator<CopyToDutRequest>): AsyncGenerator<Buffer> {
  for (;;) {
    const next = await messages.next();
    if (next.done) return;
    const msg = next.value;
    if (msg.open) throw invalidArgument('a copy has one open message, the first');
    const data = msg.data ?? Buffer.alloc(0);
    if (data.length > MAX_COPY_PIECE)
      throw invalidArgument(`a copy's data message holds at most ${MAX_COPY_PIECE} bytes`);
    if (data.length > 0) yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }
}

function doneOf(result: CopyResult, durationMs: number, via: Via): CopyDone {
  return {
    bytes: BigInt(result.bytes),
    sha256: result.sha256,
    durationMs,
    via: via === 'ssh' ? ExecVia.EXEC_VIA_SSH : ExecVia.EXEC_VIA_SERIAL,
  };
}
