/**
 * One browser console over a WebSocket. The page says hello with where it stopped (capture job and
 * offset) and gets the serial log from there: each chunk as a binary frame (8-byte big-endian
 * offset of the next record, then the DUT's bytes exactly), capture events and the session's state
 * as small JSON text frames. Output pauses while the socket's buffer is above HIGH_WATER_BYTES.
 *
 * Keystrokes (binary frames from the page) reach the DUT only while the session's identity holds
 * the DUT's lease and its role may write; this is checked again for every message, since a lease
 * can end at any time. The console's one writer is attached at the first keystroke and released
 * when the lease is lost or the socket closes.
 */
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { PositionedRecord } from '../../../jig-drivers/src/serial-framing.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { can } from '../auth/permissions.js';
import type { ConsoleWriter, DutRuntime } from '../jig/dut-runtime.js';
import type { PortState, SerialMonitor } from '../jig/serial-monitor.js';
import { pumpSerial, type SerialStart } from '../jig/serial-pump.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import type { SessionStore, WebSession } from './sessions.js';

/** Output stops being read while the socket holds more than this, unsent. */
export const HIGH_WATER_BYTES = 256 * 1024;
/** A page that has not said hello by then is not ours. */
const HELLO_TIMEOUT_MS = 10_000;
/** History a page gets on its first connect: the end of the log, not days of it. */
const HISTORY_BYTES = 64 * 1024;

/** Close codes the page acts on. */
export const CLOSE = {
  goingAway: 1001,
  internal: 1011,
  badRequest: 4400,
  sessionEnded: 4401,
} as const;

/** Port states the capture's events imply (serial-monitor.ts reads them the same way). */
const PORT_EVENTS: Readonly<Record<string, PortState>> = {
  open: 'open',
  reopen: 'open',
  gone: 'absent',
  waiting: 'absent',
};

/** What the page says first: where it stopped, if it was here before. */
interface Hello {
  offset?: number;
  capture?: string;
}

/** What one console socket works with. */
export interface ConsoleSocketOptions {
  ws: WebSocket;
  session: WebSession;
  sessions: SessionStore;
  dut: DutRuntime;
  leases: LeaseManager;
  log: Logger;
}

/** A console socket being served. */
export interface ServedConsole {
  /** Resolves once the socket has closed and everything it held is let go; never rejects. */
  readonly done: Promise<void>;
  /** True while output waits for the page to take what was sent (backpressure). */
  readonly heldBack: boolean;
}

/** Serves one console socket until it closes. */
export function serveConsoleSocket(opts: ConsoleSocketOptions): ServedConsole {
  return new ConsoleSocket(opts);
}

class ConsoleSocket implements ServedConsole {
  readonly done: Promise<void>;
  #heldBack = false;
  readonly #o: ConsoleSocketOptions;
  readonly #controller = new AbortController();
  #writer: ConsoleWriter | undefined;
  #waitingOn: Writable | undefined;
  #lastFlush: Promise<void> = Promise.resolve();
  #greeted = false;
  #portState: PortState = 'stopped';
  #lastState = '';
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(opts: ConsoleSocketOptions) {
    this.#o = opts;
    const { ws, leases } = opts;
    this.done = new Promise<void>((resolve) => {
      const finish = (): void => {
        this.#close();
        resolve();
      };
      ws.once('close', finish);
      ws.once('error', () => ws.terminate());
    });
    ws.on('message', this.#onMessage);
    leases.on('change', this.#onLeaseChange);
    this.#timers.push(
      setTimeout(() => {
        if (!this.#greeted) this.#end(CLOSE.badRequest, 'expected a hello message');
      }, HELLO_TIMEOUT_MS),
      // Bounded below the 24.8-day timer limit by the session TTL.
      setTimeout(
        () => this.#end(CLOSE.sessionEnded, 'the session expired'),
        Math.max(0, opts.session.expiresAt - Date.now()),
      ),
    );
  }

  readonly #onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => {
    const bytes = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    if (!this.#greeted) {
      if (isBinary) {
        this.#end(CLOSE.badRequest, 'expected a hello message');
        return;
      }
      const hello = parseHello(bytes.toString('utf8'));
      if (!hello) {
        this.#end(CLOSE.badRequest, 'expected {"type":"hello"}');
        return;
      }
      this.#greeted = true;
      this.#start(hello);
      return;
    }
    // Text frames after hello are control messages; none is defined yet, so they are ignored.
    if (isBinary) this.#input(bytes);
  };

  get heldBack(): boolean {
    return this.#heldBack;
  }

  readonly #onLeaseChange = (): void => {
    if (this.#writer && this.#readOnlyReason()) this.#releaseWriter();
    this.#sendState();
  };

  readonly #onWriterLost = (): void => {
    const reason = this.#writer?.signal.reason;
    this.#releaseWriter();
    this.#sendJson({
      type: 'notice',
      message: reason instanceof Error ? reason.message : 'the console writer was detached',
    });
    this.#sendState();
  };

  readonly #onDrain = (): void => {
    this.#waitingOn = undefined;
    this.#o.ws.resume();
  };

  #start(hello: Hello): void {
    const { dut, log } = this.#o;
    let start: SerialStart;
    try {
      const monitor = dut.requireCapture();
      this.#portState = monitor.state;
      start = startFor(hello, monitor);
    } catch (err) {
      this.#fail(err);
      return;
    }
    this.#sendState();
    pumpSerial({
      dut,
      start,
      follow: true,
      signal: this.#controller.signal,
      reader: {
        onCapture: (monitor, restarted) =>
          this.#sendJson({ type: 'capture', captureJobId: monitor.jobId, restarted }),
        onRecord: (record) => this.#onRecord(record),
        drained: (signal) => this.#drained(signal),
      },
    }).then(
      (end) => {
        if (end === 'done') this.#end(CLOSE.goingAway, 'the console of this DUT has closed');
      },
      (err: unknown) => {
        log.debug({ err, dut: dut.dut.name }, 'web console pump ended');
        this.#fail(err);
      },
    );
  }

  #onRecord(record: PositionedRecord): boolean {
    if (record.kind === 'chunk') {
      const frame = Buffer.allocUnsafe(8 + record.data.length);
      frame.writeBigUInt64BE(BigInt(record.nextOffset), 0);
      record.data.copy(frame, 8);
      this.#send(frame, true);
    } else {
      this.#sendJson({
        type: 'event',
        event: record.event,
        detail: record.detail,
        at: record.at,
        nextOffset: record.nextOffset,
      });
      const port = PORT_EVENTS[record.event];
      if (port) {
        this.#portState = port;
        this.#sendState();
      }
    }
    return this.#o.ws.bufferedAmount < HIGH_WATER_BYTES;
  }

  /**
   * Resolves once the last frame sent has been handed to the socket (ws has no per-socket 'drain';
   * its maintainers point at the send callback, ws #1255 #2009), or on close.
   */
  #drained(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    this.#heldBack = true;
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        this.#heldBack = false;
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      void this.#lastFlush.then(done);
    });
  }

  #input(bytes: Buffer): void {
    const { dut, sessions, session } = this.#o;
    if (!sessions.alive(session)) {
      this.#end(CLOSE.sessionEnded, 'the session has ended');
      return;
    }
    if (bytes.length === 0) return;
    const why = this.#readOnlyReason();
    if (why) {
      this.#dropped(bytes.length, why);
      return;
    }
    let stdin: Writable;
    try {
      if (!this.#writer) {
        // Under the holder's lease, so the lease's end detaches it (DutRuntime.leaseEnded).
        const lease = this.#o.leases.leaseOn(dut.dut.name);
        this.#writer = dut.attachConsole(session.identity, false, lease?.id);
        this.#writer.signal.addEventListener('abort', this.#onWriterLost, { once: true });
      }
      stdin = this.#writer.input();
    } catch (err) {
      // Another writer (a jigctl console, another tab), or the capture is between jobs.
      this.#dropped(bytes.length, err instanceof Error ? err.message : String(err));
      return;
    }
    // Backpressure: read no more keystrokes until the capture has taken these.
    if (!stdin.write(bytes)) {
      this.#o.ws.pause();
      this.#waitingOn = stdin;
      stdin.once('drain', this.#onDrain);
    }
  }

  /** Why this session may not type now, or '' when it may. */
  #readOnlyReason(): string {
    const { session, leases, dut } = this.#o;
    const { name, role } = session.identity;
    if (!can(role, 'console.write')) return `${name} (role ${role}) may watch but not type`;
    const holder = leases.leaseOn(dut.dut.name)?.holder;
    if (holder === name) return '';
    return holder
      ? `${dut.dut.name} is leased by ${holder}`
      : `${name} does not hold the lease of ${dut.dut.name} (jigctl claim --dut ${dut.dut.name})`;
  }

  #sendState(): void {
    if (!this.#greeted) return;
    const { session, leases, dut } = this.#o;
    const reason = this.#readOnlyReason();
    const state = JSON.stringify({
      type: 'state',
      writable: reason === '',
      reason,
      holder: leases.leaseOn(dut.dut.name)?.holder ?? '',
      portState: this.#portState,
      identity: session.identity.name,
      role: session.identity.role,
    });
    if (state === this.#lastState) return;
    this.#lastState = state;
    this.#send(state, false);
  }

  #dropped(bytes: number, reason: string): void {
    this.#sendJson({ type: 'dropped', bytes, reason });
  }

  #sendJson(message: Record<string, unknown>): void {
    this.#send(JSON.stringify(message), false);
  }

  #send(data: Buffer | string, binary: boolean): void {
    const { ws } = this.#o;
    if (ws.readyState !== ws.OPEN) return;
    this.#lastFlush = new Promise((resolve) => ws.send(data, { binary }, () => resolve()));
  }

  #fail(err: unknown): void {
    const message = err instanceof JigletError ? err.message : 'the console failed; reconnecting';
    if (!(err instanceof JigletError)) this.#o.log.error({ err }, 'web console failed');
    this.#sendJson({ type: 'error', message });
    this.#end(CLOSE.internal, message);
  }

  #end(code: number, reason: string): void {
    const { ws } = this.#o;
    // A close reason is at most 123 bytes.
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING)
      ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    this.#close();
  }

  #releaseWriter(): void {
    const writer = this.#writer;
    if (!writer) return;
    this.#writer = undefined;
    writer.signal.removeEventListener('abort', this.#onWriterLost);
    writer.release();
  }

  /** Idempotent: everything this socket holds is let go, on every path. */
  #close(): void {
    this.#controller.abort();
    for (const t of this.#timers.splice(0)) clearTimeout(t);
    this.#o.leases.off('change', this.#onLeaseChange);
    this.#o.ws.off('message', this.#onMessage);
    // The capture's stdin outlives this socket: a drain listener left on it would leak.
    this.#waitingOn?.off('drain', this.#onDrain);
    this.#waitingOn = undefined;
    this.#releaseWriter();
  }
}

/** The hello message, or undefined when it is not one. */
function parseHello(text: string): Hello | undefined {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof msg !== 'object' || msg === null || (msg as { type?: unknown }).type !== 'hello')
    return undefined;
  const { offset, capture } = msg as { offset?: unknown; capture?: unknown };
  return {
    offset: typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0 ? offset : undefined,
    capture: typeof capture === 'string' && capture.length <= 64 ? capture : undefined,
  };
}

/**
 * Where a page starts: where it stopped, if that is in the capture log it was reading; the start
 * of the log when that capture has since been replaced (the page missed only what the old one
 * captured after it left); otherwise the last HISTORY_BYTES.
 */
function startFor(hello: Hello, monitor: SerialMonitor): SerialStart {
  if (hello.capture === monitor.jobId && hello.offset !== undefined && hello.offset <= monitor.log.length)
    return { offset: hello.offset };
  if (hello.capture !== undefined && hello.capture !== monitor.jobId) return {};
  return { offset: Math.max(0, monitor.boundary - HISTORY_BYTES) };
}
