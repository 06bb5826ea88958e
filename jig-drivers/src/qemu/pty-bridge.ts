/**
 * The QEMU DUT's UART as a real pty. Node has no pty API and native addons cannot be installed
 * here, so a tiny python3 helper owns the pty master and shuttles bytes between it and its own
 * stdin/stdout pipes. The bridge lives as long as qemu-host, not as long as one QEMU run: the
 * host side keeps the same /dev/pts/N across power cycles, like a USB-serial adapter that stays
 * plugged in while the board is off. (fixtures/virtual-dut/pty-pair.ts has the same idea; production
 * code may not import fixtures/.)
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { JigletError } from '../../../protocol/src/errors.js';

/** How long the helper may take to print the slave path (a pyenv shim alone takes ~100 ms). */
const START_TIMEOUT_MS = 10_000;
/** How long a helper whose stdin was closed may take to exit before it is killed. */
const EXIT_GRACE_MS = 2000;
/** Bytes of helper stderr kept for error messages. */
const STDERR_KEEP = 4096;

// Raw mode on the slave so bytes pass unchanged; the helper keeps the slave open so the master
// never reads EIO while no host has the port open; a non-blocking master plus a bounded queue so a
// host that never reads cannot wedge the helper (a real UART without a listener loses bytes too);
// stdin EOF = qemu-host stopped or died, so the helper exits and the /dev/pts node disappears.
const HELPER = `
import os, select, sys, tty
master, slave = os.openpty()
tty.setraw(slave)
os.set_blocking(master, False)
os.write(1, (os.ttyname(slave) + "\\n").encode())
pending = bytearray()
CAP = 1 << 20
while True:
    r, w, _ = select.select([0, master], [master] if pending else [], [])
    if 0 in r:
        data = os.read(0, 65536)
        if not data:
            break
        pending += data
        if len(pending) > CAP:
            del pending[: len(pending) - CAP]
    if master in r:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            data = b""
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    if master in w and pending:
        try:
            del pending[: os.write(master, pending)]
        except BlockingIOError:
            pass
`;

/** A live pty; bytes the host writes go to `onData`; emits `'exit'` (code, signal) if the helper ends. */
export class PtyBridge extends EventEmitter {
  /** The slave device the host opens, e.g. `/dev/pts/7`. */
  readonly device: string;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #exited: Promise<void>;
  #closing: Promise<void> | undefined;

  private constructor(child: ChildProcessWithoutNullStreams, device: string, exited: Promise<void>) {
    super();
    this.#child = child;
    this.device = device;
    this.#exited = exited;
  }

  /** Starts a helper and resolves once it has printed the slave path. */
  static async open(onData: (bytes: Buffer) => void, python = 'python3'): Promise<PtyBridge> {
    const child = spawn(python, ['-u', '-c', HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    // EPIPE after the helper died is reported through 'exit'; an unhandled stream error would crash.
    child.stdin.on('error', () => undefined);
    // 'close' (process gone and its pipes drained), not 'exit': the pipes outlive 'exit'.
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const first = await new Promise<{ path: string; rest: Buffer }>((resolve, reject) => {
      let head = Buffer.alloc(0);
      const fail = (why: string): void => {
        cleanup();
        child.kill('SIGKILL');
        const detail = stderr ? `: ${stderr.trim()}` : '';
        reject(new JigletError('JIGLET_E_INTERNAL', `UART pty helper (${python}): ${why}${detail}`));
      };
      const timer = setTimeout(() => fail(`no slave path within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
      const onOut = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(0x0a);
        if (nl < 0) return;
        cleanup();
        resolve({ path: head.subarray(0, nl).toString('utf8'), rest: head.subarray(nl + 1) });
      };
      const onExit = (code: number | null, signal: string | null): void =>
        fail(`exited before start (code ${code}, signal ${signal})`);
      const onError = (error: Error): void => fail(error.message);
      const cleanup = (): void => {
        clearTimeout(timer);
        child.stdout.off('data', onOut);
        child.off('exit', onExit);
        child.off('error', onError);
      };
      child.stdout.on('data', onOut);
      child.once('exit', onExit);
      child.once('error', onError);
    });
    const bridge = new PtyBridge(child, first.path, exited);
    // Bytes that arrived in the same chunk as the path line belong to the host's stream.
    if (first.rest.length > 0) onData(first.rest);
    child.stdout.on('data', onData);
    child.once('exit', (code, signal) => bridge.emit('exit', code, signal));
    return bridge;
  }

  /** Whether the helper is still running. */
  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Sends bytes to the host (they appear on the slave). */
  write(bytes: Buffer): void {
    if (this.alive && !this.#closing) this.#child.stdin.write(bytes);
  }

  /** Ends the helper (stdin EOF, then SIGKILL after a grace period) and waits for its exit. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (!this.alive) return this.#exited;
      this.#child.stdin.end();
      // The helper exits on EOF at once; the kill only covers a wedged helper.
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), EXIT_GRACE_MS);
      try {
        await this.#exited;
      } finally {
        clearTimeout(timer);
      }
      // libuv releases the process handle in the close phase of the loop turn after 'exit'.
      await nextTurn();
      await nextTurn();
    })();
    return this.#closing;
  }
}
