/**
 * The output pump: one thread of the agent that writes users' jobs' output into their logs. A
 * job's stdout and stderr are unix sockets to that thread: the thread connects them to the
 * agent's listener (in a private folder), names the job in their first bytes, and the agent hands
 * its ends to the job's process. A job writing at pipe speed then costs the agent's event loop one
 * short message per millisecond instead of a read, a write and a callback per 8–64 KiB. The log
 * keeps its rule: bytes are in the file before any reader is told of them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { JobOutput, OnWriteError } from './job-output.js';
import type { OutputLog } from './output-log.js';
import {
  type FromPump,
  HEADER_BYTES,
  type JobReport,
  STREAM_CODES,
  TOKEN_CHARS,
  type ToPump,
} from './output-pump-protocol.js';
import { StderrTail } from './stderr-tail.js';

// Under tsx (tests) the worker runs from the build, like the results reader's.
const WORKER_URL = new URL(
  import.meta.url.endsWith('.ts')
    ? '../../../dist/agent/src/output/output-pump-worker.js'
    : './output-pump-worker.js',
  import.meta.url,
);

/** How long the thread may take to start listening, or to open a job's log. */
const REPLY_TIMEOUT_MS = 10_000;

/** A job's output as the pump writes it: give `stdio` to spawn(), then call handedOver(). */
export class PumpedOutput implements JobOutput {
  readonly stderrTail = new StderrTail();
  readonly closed: Promise<void>;
  #markClosed!: () => void;
  #over = false;

  constructor(
    readonly token: string,
    /** The agent's ends of the job's stdout and stderr sockets. */
    readonly stdio: readonly [Socket, Socket],
    readonly log: OutputLog,
    readonly onWriteError: OnWriteError,
    readonly post: (msg: ToPump) => void,
  ) {
    this.closed = new Promise((resolve) => {
      this.#markClosed = resolve;
    });
  }

  /** The job's process holds its own copies of the sockets now (or never will): ours go. */
  handedOver(): void {
    for (const s of this.stdio) s.destroy();
  }

  destroy(): Promise<void> {
    this.handedOver();
    if (!this.#over) this.post({ type: 'destroy', token: this.token });
    return this.closed;
  }

  /** Takes one report of the pump's thread. */
  take(report: JobReport): void {
    if (!this.log.closed) {
      try {
        this.log.appended(report);
      } catch (err) {
        this.onWriteError(err as Error);
      }
    }
    if (report.error !== undefined) this.onWriteError(new Error(report.error));
    if (report.end) {
      this.stderrTail.take(report.end.stderrTail);
      this.#end();
    }
  }

  /** The thread is gone: what it did not report is lost to the log, and the job is told so. */
  lost(err: Error): void {
    if (this.#over) return;
    this.onWriteError(err);
    this.#end();
  }

  #end(): void {
    this.#over = true;
    this.handedOver();
    this.#markClosed();
  }
}

/** A pair of sockets connected ahead of the job that will write to them. */
interface Spare {
  token: string;
  stdout: Socket;
  stderr: Socket;
}

/** A job whose sockets are on their way from the thread. */
interface Arriving {
  sockets: Partial<Record<'stdout' | 'stderr', Socket>>;
  arrived(): void;
  failed(err: Error): void;
}

/** The pump's thread and the jobs it writes for. */
export class OutputPump {
  readonly #worker: Worker;
  readonly #server: Server;
  readonly #dir: string;
  readonly #socketPath: string;
  readonly #outputs = new Map<string, PumpedOutput>();
  readonly #arriving = new Map<string, Arriving>();
  /** Jobs waiting for the thread to open their log: the error, if it could not. */
  readonly #binding = new Map<string, (error: string | undefined) => void>();
  /** The pair of sockets the next job gets (see attach()). */
  #spare: Promise<Spare> | undefined;
  readonly #ready: Promise<void>;
  #dead: Error | undefined;

  private constructor() {
    // A fresh private folder: a socket path has ~100 bytes, more than a deep state directory leaves.
    this.#dir = mkdtempSync(join(tmpdir(), 'jiglet-pump-'));
    this.#socketPath = join(this.#dir, 'output.sock');
    this.#server = createServer((conn) => this.#accept(conn));
    let ready!: () => void;
    let failed!: (err: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    this.#ready.catch(() => {});
    this.#server.on('error', (err) => {
      failed(err);
      this.#die(err);
    });
    this.#worker = new Worker(WORKER_URL, { workerData: { socketPath: this.#socketPath } });
    // The agent's stop closes it; a test that never stops its supervisor must still exit.
    this.#worker.unref();
    this.#server.unref();
    let listening = false;
    let started = false;
    const bothReady = (): void => {
      if (listening && started) ready();
    };
    this.#server.listen(this.#socketPath, () => {
      listening = true;
      bothReady();
    });
    this.#worker.on('message', (msg: FromPump) => {
      switch (msg.type) {
        case 'ready':
          started = true;
          bothReady();
          break;
        case 'bound':
          this.#binding.get(msg.token)?.(msg.error);
          break;
        case 'report':
          for (const report of msg.reports) this.#take(report);
          this.#post({ type: 'ack' });
          break;
      }
    });
    const gone = (err: Error): void => {
      failed(err);
      this.#die(err);
    };
    this.#worker.on('error', gone);
    this.#worker.on('exit', (code) => gone(new Error(`the output writer thread exited (${code})`)));
  }

  /** Starts the thread and the listener; resolves once both are up. */
  static async start(): Promise<OutputPump> {
    const pump = new OutputPump();
    try {
      await withTimeout(pump.#ready, 'the output writer thread did not start');
      pump.#spare = pump.#prepare();
      pump.#spare.catch(() => {});
    } catch (err) {
      await pump.close();
      throw err;
    }
    return pump;
  }

  /** Where the thread's sockets connect (a private folder; each must open with a token). */
  get socketPath(): string {
    return this.#socketPath;
  }

  /** False once the thread has failed; a new pump is then needed. */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** Jobs whose output the pump writes now (for leak checks). */
  get jobs(): number {
    return this.#outputs.size;
  }

  /**
   * Binds the next prepared pair of sockets to `log` for a job about to start, and prepares the
   * pair after it. Resolves once the thread has the log open: bytes the job writes then have
   * somewhere to go.
   */
  async attach(log: OutputLog, onWriteError: OnWriteError): Promise<PumpedOutput> {
    if (this.#dead) throw this.#dead;
    // Taken before any await: two starts at once never get the same pair.
    const next = this.#spare ?? this.#prepare();
    this.#spare = this.#prepare();
    // Its failure is met by the attach that takes it; until then it must not count as unhandled.
    this.#spare.catch(() => {});
    let spare: Spare;
    try {
      spare = await next;
    } catch {
      // That pair was lost (its thread was busy past the deadline, say): one more try.
      spare = await this.#prepare();
    }
    const { token, stdout, stderr } = spare;
    try {
      const error = await withTimeout(
        new Promise<string | undefined>((resolve) => {
          this.#binding.set(token, resolve);
          this.#post({ type: 'bind', token, dir: log.dir });
        }),
        'the output writer did not open the log',
      );
      if (error !== undefined) throw new Error(error);
    } catch (err) {
      stdout.destroy();
      stderr.destroy();
      this.#post({ type: 'destroy', token });
      throw new Error(`the output writer could not take ${log.dir}: ${(err as Error).message}`);
    } finally {
      this.#binding.delete(token);
    }
    const output = new PumpedOutput(token, [stdout, stderr], log, onWriteError, (m) => this.#post(m));
    this.#outputs.set(token, output);
    return output;
  }

  /** Has the thread connect a pair of sockets for a job to come. */
  async #prepare(): Promise<Spare> {
    if (this.#dead) throw this.#dead;
    const token = randomBytes(TOKEN_CHARS / 2).toString('hex');
    const arriving: Arriving = { sockets: {}, arrived: () => {}, failed: () => {} };
    const arrived = new Promise<void>((resolve, reject) => {
      arriving.arrived = resolve;
      arriving.failed = reject;
    });
    arrived.catch(() => {});
    this.#arriving.set(token, arriving);
    this.#post({ type: 'prepare', token });
    try {
      await withTimeout(arrived, "the output writer did not connect a job's output");
    } catch (err) {
      for (const s of Object.values(arriving.sockets)) s.destroy();
      this.#post({ type: 'destroy', token });
      throw err;
    } finally {
      this.#arriving.delete(token);
    }
    const { stdout, stderr } = arriving.sockets as Required<Arriving['sockets']>;
    return { token, stdout, stderr };
  }

  /** Ends the thread; jobs it still wrote for are told their output is lost. */
  async close(): Promise<void> {
    this.#die(new Error('the agent is stopping'));
    const spare = await this.#spare?.catch(() => undefined);
    spare?.stdout.destroy();
    spare?.stderr.destroy();
    await this.#worker.terminate();
    await new Promise((resolve) => this.#server.close(resolve));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** A socket from the thread: its header names the job and stream it carries. */
  #accept(conn: Socket): void {
    conn.on('error', () => conn.destroy());
    // A connection that never names itself is not held open for good.
    conn.setTimeout(REPLY_TIMEOUT_MS, () => conn.destroy());
    let header = Buffer.alloc(0);
    const onHeader = (chunk: Buffer): void => {
      header = Buffer.concat([header, chunk]);
      if (header.length < HEADER_BYTES) return;
      conn.off('data', onHeader);
      conn.setTimeout(0);
      // Nothing but the header ever comes this way: the job's bytes go the other.
      conn.pause();
      const arriving = this.#arriving.get(header.subarray(0, TOKEN_CHARS).toString('latin1'));
      const stream = STREAM_CODES[header[TOKEN_CHARS]!];
      if (!arriving || !stream || arriving.sockets[stream] || header.length > HEADER_BYTES) {
        conn.destroy();
        return;
      }
      arriving.sockets[stream] = conn;
      if (arriving.sockets.stdout && arriving.sockets.stderr) arriving.arrived();
    };
    conn.on('data', onHeader);
  }

  #take(report: JobReport): void {
    const output = this.#outputs.get(report.token);
    if (report.end) {
      this.#outputs.delete(report.token);
      // Ended before both sockets arrived: they never will.
      this.#arriving.get(report.token)?.failed(new Error('its sockets closed before they were connected'));
    }
    output?.take(report);
  }

  #post(msg: ToPump): void {
    if (!this.#dead) this.#worker.postMessage(msg);
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    for (const arriving of this.#arriving.values()) arriving.failed(err);
    for (const resolve of this.#binding.values()) resolve(err.message);
    for (const output of this.#outputs.values()) output.lost(err);
    this.#outputs.clear();
  }
}

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} in ${REPLY_TIMEOUT_MS / 1000} s`)),
          REPLY_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
