/**
 * The core of the `jig-driver serial` job: copies a serial port into the job's output (framed by
 * serial-record.ts) and the console's keystrokes into the port, for as long as the job runs.
 * USB-serial adapters vanish when the DUT is powered off (lava-docker #162, labgrid #1571), so a
 * vanished port is a gap to mark and wait out, never the end of the capture.
 */
import { closeSync, constants, existsSync, openSync, type Stats, stat } from 'node:fs';
import type { SocketConstructorOpts } from 'node:net';
import { ReadStream as TtyReadStream } from 'node:tty';
import { SerialPort } from 'serialport';
import { DEFAULT_REOPEN_TIMEOUT_MS } from './serial-defaults.js';
import { encodeChunk, encodeEvent, type SerialEventName } from './serial-framing.js';
import { dirsOf, PATH_RECHECK_MS, waitForPath, watchDirs } from './wait-for-path.js';

// The re-check period is shared with every other wait for a device node; the reopen period
// (serial-defaults.ts) with jig-driver's option table.
export { DEFAULT_REOPEN_TIMEOUT_MS, PATH_RECHECK_MS };

/** What to capture, where to put it, and when to stop. */
export interface SerialCaptureOptions {
  /** tty path, already resolved (a /dev/serial/by-id link is best: it survives re-enumeration). */
  path: string;
  /** Line speed. */
  baudRate: number;
  /** Receives the records; a `false` from write() pauses reading the port until 'drain'. */
  out: NodeJS.WritableStream;
  /** Console keystrokes, written to the port. */
  input?: NodeJS.ReadableStream;
  /** Period of the `waiting` event while the port is gone; default DEFAULT_REOPEN_TIMEOUT_MS. */
  reopen?: { timeoutMs: number };
  /** Stops the capture: the port is closed and every listener, watcher and timer released. */
  signal: AbortSignal;
  /** Clock for record timestamps (epoch ms); injectable for tests. */
  now?: () => number;
}

/**
 * Captures until `signal` aborts; resolves once everything is released. Input that arrives while
 * the port is gone is dropped and recorded as `dropped-input <bytes>`: keystrokes typed into a dead
 * console must not be replayed later into a DUT that has since rebooted into a different state.
 */
export async function runSerialCapture(opts: SerialCaptureOptions): Promise<void> {
  const { path: ttyPath, out, input, signal } = opts;
  const now = opts.now ?? Date.now;
  const periodMs = opts.reopen?.timeoutMs ?? DEFAULT_REOPEN_TIMEOUT_MS;
  let port: SerialPort | undefined; // set only while open and forwarding
  let reader: TtyReadStream | undefined; // the port's reading side, as long as `port`
  let outBlocked = false;

  const onDrain = (): void => {
    outBlocked = false;
    reader?.resume();
  };
  const emit = (record: Buffer): void => {
    if (out.write(record) || outBlocked) return;
    outBlocked = true;
    reader?.pause(); // the OS buffer, then the DUT's flow, absorbs the rest (DESIGN §2: no unbounded buffers)
    out.once('drain', onDrain);
  };
  const event = (name: SerialEventName, detail: string): void => emit(encodeEvent(now(), name, detail));
  const onData = (chunk: Buffer): void => emit(encodeChunk(now(), chunk));

  const resumeInput = (): void => {
    input?.resume();
  };
  const onInput = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (!port) {
      event('dropped-input', String(bytes.length));
    } else if (!port.write(bytes)) {
      input?.pause();
      port.once('drain', resumeInput);
    }
  };
  input?.on('data', onInput);

  let waitingTimer: NodeJS.Timeout | undefined;
  const startWaiting = (): void => {
    let periods = 0;
    waitingTimer ??= setInterval(() => event('waiting', `${ttyPath} ${++periods * periodMs} ms`), periodMs);
  };
  const stopWaiting = (): void => {
    clearInterval(waitingTimer);
    waitingTimer = undefined;
  };

  try {
    let everOpened = false;
    let lastFailure = '';
    // A port absent from the start is said at once, not a reopen period later: readers of the
    // log (and `jigctl jig`) must tell "waiting for the adapter" from "starting".
    if (!existsSync(ttyPath)) event('waiting', `${ttyPath} 0 ms`);
    while (!signal.aborted) {
      startWaiting(); // also covers a port that is absent when the capture starts
      if (!(await waitForPath(ttyPath, signal))) break;
      let opened: Opened;
      try {
        opened = await openPort(ttyPath, opts.baudRate);
      } catch (error) {
        // Present but not openable (still enumerating, EBUSY, EACCES): report each new cause once.
        const message = `open failed: ${error instanceof Error ? error.message : String(error)}`;
        if (message !== lastFailure) event('gone', message);
        lastFailure = message;
        await pause(PATH_RECHECK_MS, signal);
        continue;
      }
      if (signal.aborted) {
        await closePort(opened);
        break;
      }
      stopWaiting();
      lastFailure = '';
      event(everOpened ? 'reopen' : 'open', ttyPath);
      // tcflush() does not say how many bytes it discarded, so the detail names the call instead.
      event('flush', 'tcioflush');
      everOpened = true;
      port = opened.port;
      reader = opened.reader;
      const forwarding = forward(opened, ttyPath, onData, signal);
      if (outBlocked) reader.pause(); // attaching 'data' set it flowing; `out` is still full
      const reason = await forwarding;
      port = undefined;
      reader = undefined;
      input?.resume(); // a write pending on the lost port will never drain
      // Bytes already read but held back by backpressure still belong before the gap marker
      // (at most the read-ahead). They are taken from read()'s result: after a read error has
      // destroyed the stream, read() still gives them but emits no 'data'.
      opened.reader.pause();
      opened.reader.removeListener('data', onData);
      for (let held = takeHeld(opened.reader); held; held = takeHeld(opened.reader)) onData(held);
      await closePort(opened);
      if (reason === undefined) break;
      event('gone', reason);
    }
  } finally {
    stopWaiting();
    out.removeListener('drain', onDrain);
    input?.removeListener('data', onInput);
    input?.pause(); // nobody consumes it any more: leave keystrokes in the stream, not on the floor
  }
}

/**
 * A port open for the capture: serialport sets the line up (speed, raw mode, flush) and writes
 * the console's keystrokes; the bytes are read through Node's tty stream on a second descriptor.
 * serialport reads on the thread pool (a read, then a poll when it gets EAGAIN), which put a
 * thread-pool round trip into every line's latency and most of its p99; the tty stream reads on
 * the event loop as soon as epoll says so. The tty stream leaves the line settings alone.
 */
interface Opened {
  port: SerialPort;
  reader: TtyReadStream;
}

/**
 * Forwards data until the port is lost (resolves with the reason) or `signal` aborts (undefined).
 * A hung-up tty (unplugged adapter, closed pty master) reads 0 bytes, which the tty stream takes
 * for its end, or fails with EIO. The loss is also detected from the device node or its by-id
 * link vanishing (watched, plus re-checked), since an adapter can vanish before a read tells.
 */
function forward(
  { port, reader }: Opened,
  ttyPath: string,
  onData: (chunk: Buffer) => void,
  signal: AbortSignal,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let lastError = '';
    let settled = false;
    const finish = (reason: string | undefined): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      port.removeListener('close', onClose);
      reader.removeListener('end', onEnd);
      reader.removeListener('error', onReadError);
      clearInterval(recheck);
      unwatch();
      resolve(reason);
    };
    const onAbort = (): void => finish(undefined);
    const onClose = (error: Error | null): void => finish(error?.message || lastError || 'closed');
    const onEnd = (): void => finish(`${ttyPath} hung up`);
    const onReadError = (error: Error): void => finish(`read failed: ${error.message}`);
    // A write error on a vanishing port comes with a close; keep its text as the gone reason.
    port.on('error', (error: Error) => {
      lastError = error.message;
    });
    port.once('close', onClose);
    reader.once('end', onEnd);
    reader.once('error', onReadError);
    signal.addEventListener('abort', onAbort, { once: true });
    reader.on('data', onData);
    // Same name, different node: the adapter went and came back between two looks.
    const identity = (st: Stats): string => `${st.dev}:${st.ino}:${st.rdev}`;
    let openedAs: string | undefined;
    const check = (): void => {
      stat(ttyPath, (error, st) => {
        if (error) return finish(`${ttyPath} vanished`);
        openedAs ??= identity(st);
        if (identity(st) !== openedAs) finish(`${ttyPath} replaced`);
      });
    };
    const unwatch = watchDirs(dirsOf(ttyPath), check);
    const recheck = setInterval(check, PATH_RECHECK_MS);
    check(); // records the node we opened
    if (signal.aborted) onAbort();
  });
}

/** A closed port may still report a failed pending write; it has nothing left to tell us. */
function ignoreLateError(): void {}

/**
 * Opens `ttyPath` and discards stale bytes a pty or adapter kept from before (DESIGN §6).
 * bindings-cpp's open already calls tcflush() while setting the baud rate; the explicit flush once
 * open() has completed also drops what arrived meanwhile, and keeps us safe if that ever changes.
 */
async function openPort(ttyPath: string, baudRate: number): Promise<Opened> {
  const port = new SerialPort({ path: ttyPath, baudRate, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
  try {
    await new Promise<void>((resolve, reject) => port.flush((error) => (error ? reject(error) : resolve())));
    // Opened after serialport has set the line up: its CLOCAL is what keeps libuv's own
    // (blocking) reopen below from waiting for a carrier. No controlling tty for the capture.
    const fd = openSync(ttyPath, constants.O_RDONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
    let reader: TtyReadStream;
    try {
      // Read ahead up to 64 KiB while paused, as serialport did: bytes read before the port
      // vanishes are kept (before the gap marker); what the OS still held is lost either way.
      reader = new TtyReadStream(fd, READ_AHEAD);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    // libuv reopens a tty for its handle (so its non-blocking mode is its own) and leaves the
    // descriptor it was given to the caller, as with a process's stdin: ours to close. If it
    // could not reopen, the handle uses ours (and an unknown handle keeps it, to be safe).
    const used = handleFd(reader);
    if (used !== undefined && used !== fd) closeSync(fd);
    return { port, reader };
  } catch (error) {
    await closeSerialPort(port);
    throw error;
  }
}

/** Closes both sides of an opened port; errors on a dead device change nothing for the capture. */
async function closePort({ port, reader }: Opened): Promise<void> {
  reader.removeAllListeners();
  reader.on('error', ignoreLateError);
  if (!reader.destroyed) {
    const closed = new Promise<void>((resolve) => reader.once('close', () => resolve()));
    reader.destroy();
    await closed;
  }
  await closeSerialPort(port);
  port.removeAllListeners();
  port.on('error', ignoreLateError);
}

function closeSerialPort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => port.close(() => resolve()));
}

/**
 * The capture reads up to 64 KiB from the port ahead of a paused `out` (tty.ReadStream passes its
 * options on to the stream, though Node's types list only the socket's).
 */
const READ_AHEAD: SocketConstructorOpts & { readableHighWaterMark: number } = {
  readableHighWaterMark: 64 * 1024,
};

/** What `reader` has read and not yet handed out, or undefined. */
function takeHeld(reader: TtyReadStream): Buffer | undefined {
  if (reader.readableLength === 0) return undefined;
  return (reader.read() as Buffer | null) ?? undefined;
}

/** The descriptor a tty stream's handle reads (net.Socket's `_handle.fd`, which Node sets on Unix). */
function handleFd(reader: TtyReadStream): number | undefined {
  return (reader as unknown as { _handle?: { fd?: number } })._handle?.fd;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
