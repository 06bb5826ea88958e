/**
 * The output pump: one thread of the agent that writes users' jobs' output into their logs. A
 * job's stdout and stderr are unix sockets to that thread (the agent connects them, names the
 * job in their first bytes, and hands them to the job's process), so a job writing at pipe speed
 * costs the agent's event loop one short message per batch of appends instead of a read, a write
 * and a callback per 8–64 KiB. The log keeps its rule: bytes are in the file before any reader is
 * told of them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { JobOutput, OnWriteError } from './job-output.js';
import type { OutputLog } from './output-log.js';
import {
  type FromPump,
  type JobReport,
  STREAM_BYTE,
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

/** The pump's thread and the jobs it writes for. */
export class OutputPump {
  readonly #worker: Worker;
  readonly #dir: string;
  readonly #socketPath: string;
  readonly #outputs = new Map<string, PumpedOutput>();
  readonly #opening = new Map<string, (error: string | undefined) => void>();
  #ready: Promise<void>;
  #dead: Error | undefined;

  private constructor() {
    // A fresh private folder: a socket path has ~100 bytes, more than a deep state directory leaves.
    this.#dir = mkdtempSync(join(tmpdir(), 'jiglet-pump-'));
    this.#socketPath = join(this.#dir, 'output.sock');
    this.#worker = new Worker(WORKER_URL, { workerData: { socketPath: this.#socketPath } });
    // The agent's stop closes it; a test that never stops its supervisor must still exit.
    this.#worker.unref();
    let ready!: () => void;
    let failed!: (err: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    this.#ready.catch(() => {});
    this.#worker.on('message', (msg: FromPump) => {
      switch (msg.type) {
        case 'ready':
          ready();
          break;
        case 'failed':
          failed(new Error(`the output writer could not listen on ${this.#socketPath}: ${msg.message}`));
          this.#die(new Error(msg.message));
          break;
        case 'opened':
          this.#opening.get(msg.token)?.(msg.error);
          break;
        case 'report':
          for (const report of msg.reports) {
            const output = this.#outputs.get(report.token);
            if (report.end) this.#outputs.delete(report.token);
            output?.take(report);
          }
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

  /** Starts the thread; resolves once it listens. */
  static async start(): Promise<OutputPump> {
    const pump = new OutputPump();
    try {
      await withTimeout(pump.#ready, 'the output writer thread did not start');
    } catch (err) {
      await pump.close();
      throw err;
    }
    return pump;
  }

  /** Where the thread listens for jobs' sockets (a private folder; each must open with a token). */
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

  /** Opens `log` for a job about to start, and connects the sockets its process will write to. */
  async attach(log: OutputLog, onWriteError: OnWriteError): Promise<PumpedOutput> {
    if (this.#dead) throw this.#dead;
    const token = randomBytes(TOKEN_CHARS / 2).toString('hex');
    const error = await withTimeout(
      new Promise<string | undefined>((resolve) => {
        this.#opening.set(token, resolve);
        this.#post({ type: 'open', token, dir: log.dir });
      }),
      'the output writer thread did not answer',
    ).finally(() => this.#opening.delete(token));
    if (error !== undefined) throw new Error(`the output writer could not open ${log.dir}: ${error}`);
    const sockets: Socket[] = [];
    try {
      for (const stream of ['stdout', 'stderr'] as const) {
        sockets.push(
          await this.#connect(Buffer.concat([Buffer.from(token, 'latin1'), Buffer.of(STREAM_BYTE[stream])])),
        );
      }
    } catch (err) {
      for (const s of sockets) s.destroy();
      this.#post({ type: 'destroy', token });
      throw err;
    }
    const output = new PumpedOutput(token, [sockets[0]!, sockets[1]!], log, onWriteError, (m) =>
      this.#post(m),
    );
    this.#outputs.set(token, output);
    return output;
  }

  /** Ends the thread; jobs it still wrote for are told their output is lost. */
  async close(): Promise<void> {
    this.#die(new Error('the agent is stopping'));
    await this.#worker.terminate();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** A socket to the thread whose header has been written: the job's bytes can only follow it. */
  #connect(header: Buffer): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.#socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.write(header, (err) => {
          if (err) return reject(err);
          socket.off('error', reject);
          // The thread only ever closes it; late errors (EPIPE) have no one to tell.
          socket.on('error', () => {});
          resolve(socket);
        });
      });
    });
  }

  #post(msg: ToPump): void {
    if (!this.#dead) this.#worker.postMessage(msg);
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    for (const resolve of this.#opening.values()) resolve(err.message);
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
