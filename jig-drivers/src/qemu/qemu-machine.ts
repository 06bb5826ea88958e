/**
 * One run of qemu-system-x86_64: "power on" starts it, "power off" ends it. The guest's UART is
 * QEMU's stdio chardev on pipes, so the pty the host side sees belongs to qemu-host and outlives
 * the run; QMP runs over an inherited socket (fd 3) to tell "QEMU is up and the VM runs" apart
 * from "QEMU refused to start" without guessing with a timer, and to quit cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Duplex, Readable, Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { JigletError } from '../../../protocol/src/errors.js';
import { deadlineExceeded, trimOutput } from '../deadline.js';
import { QmpConnection } from './qmp-connection.js';

/** How long QEMU may take from spawn to a running VM (machine setup only; the guest boots later). */
export const QEMU_START_TIMEOUT_MS = 30_000;
/** How long QEMU may take to exit after QMP `quit` before it gets SIGTERM. */
const QUIT_GRACE_MS = 5000;
/** How long QEMU may take to exit after SIGTERM before it gets SIGKILL. */
const TERM_GRACE_MS = 2000;
/** The host address the SSH port forward listens on: loopback only, never the jig's network. */
export const SSH_FORWARD_HOST = '127.0.0.1';
/** Bytes of QEMU's stderr kept for error messages. */
const STDERR_KEEP = 4096;

/** What one QEMU run boots. */
export interface QemuMachineOptions {
  /** The DUT's name: QEMU's `-name` and the guest's hostname (`jiglet.hostname=`). */
  name: string;
  /** The QEMU executable. */
  qemu: string;
  /** `tcg` (software emulation) or `kvm`; with KVM the guest gets the host's CPU model. */
  accel: 'kvm' | 'tcg';
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** Kernel image (bzImage). */
  kernel: string;
  /** Initramfs (cpio, optionally compressed). */
  initrd: string;
  /** Extra kernel command line words, after the console settings. */
  append: string;
  /** Raw disk image attached as virtio-blk /dev/vda; absent = no disk (the medium is on the host). */
  disk?: string;
  /**
   * Host port (on 127.0.0.1 only) forwarded to the guest's port 22 over a virtio-net card with
   * user-mode networking; absent or 0 = no network card at all.
   */
  sshPort?: number;
  /** Receives what the guest writes to its UART. */
  onSerial(bytes: Buffer): void;
  /** Receives QEMU's own stderr (warnings, errors). */
  onStderr?(text: string): void;
}

/** How a QEMU run ended. */
export interface QemuExit {
  /** Exit code, or null after a signal. */
  code: number | null;
  /** Signal name, or null after a normal exit. */
  signal: NodeJS.Signals | null;
  /** The last of QEMU's stderr, for messages. */
  stderr: string;
}

/** QEMU's command line for one run. */
export function qemuArgs(options: QemuMachineOptions): string[] {
  const append = `console=ttyS0 panic=0 jiglet.hostname=${options.name} ${options.append}`.trim();
  return [
    // -nodefaults: no default NIC (only the one networkArgs adds), no VGA, no floppy.
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none'],
    ...['-name', options.name, '-machine', 'pc', '-accel', options.accel, '-m', String(options.memoryMiB)],
    ...(options.accel === 'kvm' ? ['-cpu', 'host'] : []),
    ...['-chardev', 'stdio,id=uart0,signal=off', '-serial', 'chardev:uart0'],
    ...['-chardev', 'socket,id=qmp,fd=3', '-mon', 'chardev=qmp,mode=control'],
    ...['-kernel', options.kernel, '-initrd', options.initrd, '-append', append],
    // In QEMU's option lists a comma inside a value is written twice.
    ...(options.disk ? ['-drive', `file=${options.disk.replaceAll(',', ',,')},format=raw,if=virtio`] : []),
    ...(options.sshPort ? networkArgs(options.sshPort) : []),
  ];
}

/**
 * A virtio-net card on QEMU's user-mode network (the guest is 10.0.2.15, its gateway 10.0.2.2),
 * reachable from the host only through one TCP forward bound to loopback: nobody else on the
 * network can reach the DUT's SSH server. `romfile=` leaves out the card's PXE option ROM, which
 * costs boot time under TCG and is useless with `-kernel`. A virtio-rng device seeds the guest's
 * random pool at once: without it dropbear waits ~1 s under TCG for the kernel's entropy before it
 * listens (and dropbearkey, making a host key at boot, as long).
 */
function networkArgs(sshPort: number): string[] {
  return [
    ...['-netdev', `user,id=net0,hostfwd=tcp:${SSH_FORWARD_HOST}:${sshPort}-:22`],
    ...['-device', 'virtio-net-pci,netdev=net0,romfile='],
    ...['-device', 'virtio-rng-pci'],
  ];
}

/**
 * What to do about a known start failure. The SSH port is bound only while QEMU runs, so another
 * program may have taken it while the DUT was off.
 */
function startHint(options: QemuMachineOptions, stderr: string): string {
  if (options.sshPort && stderr.includes('Could not set up host forwarding rule')) {
    return ` (another program holds ${SSH_FORWARD_HOST}:${options.sshPort}: stop it, or restart qemu-host with another --ssh-port)`;
  }
  return '';
}

/** Resolves once QMP answers and the VM runs. */
async function waitRunning(qmp: QmpConnection): Promise<void> {
  await qmp.negotiate();
  // Commands run in QEMU's main loop, so an answer means machine setup (disk open included) is done.
  const status = (await qmp.execute('query-status')) as { running?: unknown } | undefined;
  if (status?.running !== true) await qmp.execute('cont');
}

/** A running QEMU child process, owned by qemu-host and always reaped. */
export class QemuMachine {
  /** Settles once QEMU has exited and its pipes are closed. */
  readonly exited: Promise<QemuExit>;
  readonly #child: ChildProcess;
  readonly #qmp: QmpConnection;
  readonly #stdin: Writable;
  #stopping: Promise<QemuExit> | undefined;

  private constructor(child: ChildProcess, qmp: QmpConnection, exited: Promise<QemuExit>) {
    this.#child = child;
    this.#qmp = qmp;
    this.#stdin = child.stdin!;
    this.exited = exited;
  }

  /** Starts QEMU and resolves once QMP reports the VM running; a QEMU that exits first rejects. */
  static async start(options: QemuMachineOptions, timeoutMs = QEMU_START_TIMEOUT_MS): Promise<QemuMachine> {
    const what = `QEMU of ${options.name}`;
    // setpriv's parent-death signal: if qemu-host dies without cleaning up (SIGKILL, OOM), the
    // kernel kills QEMU too, instead of leaving an orphan holding the disk image.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', options.qemu, ...qemuArgs(options)], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    (child.stderr as Readable).setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
      options.onStderr?.(text);
    });
    child.stdout!.on('data', (bytes: Buffer) => options.onSerial(bytes));
    // Keystrokes racing QEMU's exit hit EPIPE; the exit itself is reported through `exited`.
    child.stdin!.on('error', () => undefined);
    const exited = new Promise<QemuExit>((resolve) => {
      child.once('close', (code, signal) => resolve({ code, signal, stderr }));
    });
    const qmp = new QmpConnection(child.stdio[3] as Duplex, what);
    const machine = new QemuMachine(child, qmp, exited);
    try {
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const settle = (error?: Error): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (error) reject(error);
          else resolve();
        };
        const timer = setTimeout(() => settle(deadlineExceeded(`${what} start`, timeoutMs)), timeoutMs);
        // 'error' (spawn failed, or a later kill failed) is always followed by 'close' → `exited`.
        child.on('error', (error) =>
          settle(new JigletError('JIGLET_E_UNAVAILABLE', `${what}: ${error.message}`)),
        );
        exited.then(({ code, signal, stderr: tail }) => {
          const how = signal ? `signal ${signal}` : `code ${code}`;
          settle(
            new JigletError(
              'JIGLET_E_UNAVAILABLE',
              `${what} exited at start (${how}): ${trimOutput(tail)}${startHint(options, tail)}`,
            ),
          );
        });
        waitRunning(qmp).then(
          () => settle(),
          // A closed QMP means QEMU is exiting: its exit status and stderr (above) say why.
          (error: Error) => (qmp.closed ? undefined : settle(error)),
        );
      });
    } catch (error) {
      await machine.stop();
      throw error;
    }
    return machine;
  }

  /** Whether QEMU is still running. */
  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Sends bytes to the guest's UART. */
  writeSerial(bytes: Buffer): void {
    if (this.running && !this.#stopping) this.#stdin.write(bytes);
  }

  /** Ends QEMU: QMP `quit`, then SIGTERM, then SIGKILL, each after a grace period. Idempotent. */
  stop(): Promise<QemuExit> {
    this.#stopping ??= (async () => {
      if (this.running) {
        // Rejects if QEMU is already on its way out; the exit is what counts.
        this.#qmp.execute('quit').catch(() => undefined);
        if (!(await this.#exitWithin(QUIT_GRACE_MS))) {
          this.#child.kill('SIGTERM');
          if (!(await this.#exitWithin(TERM_GRACE_MS))) this.#child.kill('SIGKILL');
        }
      }
      const exit = await this.exited;
      // libuv releases the process handle in the close phase of the loop turn after 'exit'.
      await nextTurn();
      return exit;
    })();
    return this.#stopping;
  }

  async #exitWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}
