/**
 * What the QEMU DUT tests share: the kernel + initramfs built once per machine by
 * fixtures/qemu/build-image.sh (cached), qemu-host as a child process started through the test
 * entry, and a UART reader on the real pty. Every wait is on output or exit, with a deadline.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { homedir } from 'node:os';
import path from 'node:path';
import { SerialPort } from 'serialport';

const REPO = path.resolve(import.meta.dirname, '../../..');
const ENTRY = path.join(import.meta.dirname, 'qemu-host-main.ts');
/** The first build downloads Debian's kernel package (~70 MB); later ones find everything cached. */
export const IMAGE_BUILD_TIMEOUT_MS = 15 * 60_000;
/** qemu-host starts in well under a second, plus tsx compiling the sources on first use. */
const HOST_START_TIMEOUT_MS = 60_000;

/** The boot files of the QEMU DUT. */
export interface QemuImage {
  /** Debian's kernel. */
  kernel: string;
  /** The JigletOS initramfs. */
  initrd: string;
  /** The good disk image the script builds (version 1.2.3). */
  disk: string;
  /** The SSH client key (OpenSSH format) that root's authorized_keys in the initramfs accepts. */
  sshKey: string;
}

let built: Promise<QemuImage> | undefined;

/** Builds (or finds up to date) the kernel and initramfs; once per test process. */
export function qemuImage(): Promise<QemuImage> {
  built ??= (async () => {
    const cache = process.env.JIGLET_QEMU_CACHE ?? path.join(homedir(), '.cache', 'jiglet-qemu');
    const out = path.join(cache, 'build');
    const child = spawn('bash', [path.join(REPO, 'fixtures/qemu/build-image.sh'), out], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      stderr += text;
    });
    const [code] = (await once(child, 'close')) as [number | null];
    if (code !== 0) throw new Error(`build-image.sh exited ${code}: ${stderr.trim()}`);
    return {
      kernel: path.join(out, 'vmlinux'),
      initrd: path.join(out, 'initrd.cpio.gz'),
      disk: path.join(out, 'disk-1.2.3.img'),
      sshKey: path.join(out, 'ssh', 'id_ed25519'),
    };
  })();
  return built;
}

/** What qemu-host prints once it listens. */
export interface QemuHostReady {
  name: string;
  control: string;
  uart: string;
  device: string;
  disk: string;
  power: 'on' | 'off';
  mux: 'host' | 'dut';
  /** With --ssh-port: where the DUT's SSH server is forwarded to. */
  ssh?: { host: string; port: number };
}

/** qemu-host as a child process: its stdout lines, its stderr and its exit. */
export class QemuHostProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #changes = new EventEmitter();

  /** Starts `qemu-host` with `args` (everything after the command name). */
  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', ENTRY, 'qemu-host', ...args], {
      cwd: REPO,
      stdio: 'pipe',
    });
    this.child.stdin.end();
    let partial = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
      this.#changes.emit('change');
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => {
      this.stderr += text;
    });
    // 'close', not 'exit': every output byte has been read by then.
    this.exited = once(this.child, 'close').then(([code, signal]) => {
      this.#changes.emit('change');
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
  }

  /** Waits for the ready line and returns its JSON; fails if the process exits first. */
  async ready(): Promise<QemuHostReady> {
    await this.until('the ready line', () => this.lines.length > 0, HOST_START_TIMEOUT_MS);
    const first = this.lines[0] ?? '';
    if (!first.startsWith('ready ')) throw new Error(`first line is not "ready …": ${first}`);
    return JSON.parse(first.slice('ready '.length)) as QemuHostReady;
  }

  /** Resolves once `predicate` holds (re-checked on each line); fails at the deadline or exit. */
  until(what: string, predicate: () => boolean, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error): void => {
        clearTimeout(timer);
        this.#changes.off('change', check);
        if (error) reject(error);
        else resolve();
      };
      const check = (): void => {
        if (predicate()) done();
        else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done(new Error(`qemu-host exited (${this.child.exitCode}) before ${what}; stderr: ${this.stderr}`));
        }
      };
      const timer = setTimeout(
        () => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stdout: ${this.lines}`)),
        timeoutMs,
      );
      this.#changes.on('change', check);
      check();
    });
  }

  /** SIGTERM, then the exit (SIGKILL if it hangs past `graceMs`, which fails the caller's check). */
  async stop(graceMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The DUT's UART as a host sees it: everything received since `mark()`, and waits on it. */
export class UartReader {
  readonly #port: SerialPort;
  readonly #changes = new EventEmitter();
  #text = '';

  private constructor(port: SerialPort) {
    this.#port = port;
    port.setEncoding('latin1');
    port.on('data', (text: string) => {
      this.#text += text;
      this.#changes.emit('change');
    });
  }

  /** Opens the port and flushes what the pty held from before (stale bytes). */
  static async open(ttyPath: string): Promise<UartReader> {
    const port = new SerialPort({ path: ttyPath, baudRate: 115200, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    await new Promise<void>((resolve, reject) => port.flush((error) => (error ? reject(error) : resolve())));
    return new UartReader(port);
  }

  /** What arrived since the last `mark()`. */
  get text(): string {
    return this.#text;
  }

  /** Forgets what arrived so far: waits look only at what comes next. */
  mark(): void {
    this.#text = '';
  }

  /** Resolves with the text so far once `pattern` occurs in it; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error): void => {
        clearTimeout(timer);
        this.#changes.off('change', check);
        if (error) reject(error);
        else resolve(this.#text);
      };
      const check = (): void => {
        if (pattern.test(this.#text)) done();
      };
      const timer = setTimeout(() => {
        const tail = this.#text.slice(-1500);
        done(new Error(`no ${pattern} on the UART within ${timeoutMs} ms; last output:\n${tail}`));
      }, timeoutMs);
      this.#changes.on('change', check);
      check();
    });
  }

  /** Types `text` (as a terminal would, a line ends with CR). */
  async type(text: string): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.#port.write(text, 'latin1', (error) => (error ? reject(error) : resolve())),
    );
  }

  /** Closes the port. */
  close(): Promise<void> {
    if (!this.#port.isOpen) return Promise.resolve();
    return new Promise<void>((resolve, reject) =>
      this.#port.close((error) => (error ? reject(error) : resolve())),
    );
  }
}
