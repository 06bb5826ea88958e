/**
 * A minimal QMP (QEMU Machine Protocol) client over a stream: one JSON object per line, a greeting
 * first, `qmp_capabilities` to leave negotiation mode, then `{"execute", "id"}` → `{"return"|"error",
 * "id"}`; asynchronous `{"event"}` objects in between are ignored.
 * https://www.qemu.org/docs/master/interop/qmp-spec.html
 */
import type { Duplex } from 'node:stream';
import { JigletError } from '../../../protocol/src/errors.js';

/** Longest QMP line accepted; QEMU's answers to the few commands used here are tiny. */
const MAX_LINE = 1 << 20;

interface Waiter {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** One QMP session; every pending call is rejected when the stream closes. */
export class QmpConnection {
  readonly #stream: Duplex;
  readonly #what: string;
  readonly #waiters = new Map<number, Waiter>();
  #greeting: Waiter | undefined;
  #greeted = false;
  #closed: Error | undefined;
  #nextId = 1;
  #buffer = '';

  /** Wraps `stream` (QEMU's QMP chardev); `what` names the machine in errors. */
  constructor(stream: Duplex, what: string) {
    this.#stream = stream;
    this.#what = what;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.#onData(chunk));
    // A write after QEMU exited fails with EPIPE; the 'close' below rejects whatever waits.
    stream.on('error', () => undefined);
    stream.on('close', () => this.#fail(new JigletError('JIGLET_E_UNAVAILABLE', `${what}: QMP closed`)));
  }

  /** Whether the stream has closed (QEMU exited or is exiting). */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Waits for QEMU's greeting and leaves capabilities negotiation. */
  async negotiate(): Promise<void> {
    if (!this.#greeted) {
      await new Promise<unknown>((resolve, reject) => {
        if (this.#closed) reject(this.#closed);
        else this.#greeting = { resolve, reject };
      });
    }
    await this.execute('qmp_capabilities');
  }

  /** Runs one command and resolves with its `return` value; a QMP `error` rejects. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.#waiters.set(id, { resolve, reject });
      this.#stream.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    if (this.#buffer.length > MAX_LINE) {
      this.#fail(new JigletError('JIGLET_E_INTERNAL', `${this.#what}: QMP line longer than ${MAX_LINE}`));
      this.#stream.destroy();
      return;
    }
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let message: { QMP?: unknown; id?: unknown; return?: unknown; error?: { desc?: unknown } };
    try {
      message = JSON.parse(line);
    } catch {
      return; // Not QMP: nothing else writes to this stream, so ignore rather than guess.
    }
    if (message.QMP !== undefined) {
      this.#greeted = true;
      this.#greeting?.resolve(undefined);
      this.#greeting = undefined;
      return;
    }
    const waiter = typeof message.id === 'number' ? this.#waiters.get(message.id) : undefined;
    if (!waiter) return; // An event, or an answer to nobody.
    this.#waiters.delete(message.id as number);
    if (message.error !== undefined) {
      const desc =
        typeof message.error?.desc === 'string' ? message.error.desc : JSON.stringify(message.error);
      waiter.reject(new JigletError('JIGLET_E_INTERNAL', `${this.#what}: QMP: ${desc}`));
    } else waiter.resolve(message.return);
  }

  #fail(error: Error): void {
    this.#closed ??= error;
    this.#greeting?.reject(error);
    this.#greeting = undefined;
    for (const waiter of this.#waiters.values()) waiter.reject(error);
    this.#waiters.clear();
  }
}
