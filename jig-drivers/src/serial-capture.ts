/**
 * The core of the `jig-driver serial` job: copies a serial port into the job's output (framed by
 * serial-record.ts) and the console's keystrokes into the port, for as long as the job runs.
 * USB-serial adapters vanish when the DUT is powered off (lava-docker #162, labgrid #1571), so a
 * vanished port is a gap to mark and wait out, never the end of the capture.
 */
import { existsSync, type FSWatcher, realpathSync, type Stats, stat, watch } from 'node:fs';
import path from 'node:path';
import { SerialPort } from 'serialport';
import { encodeChunk, encodeEvent, type SerialEventName } from './serial-record.js';

/** How long a gone port is awaited before each `waiting` event (the capture itself never gives up). */
export const DEFAULT_REOPEN_TIMEOUT_MS = 60_000;

/**
 * Period of the safety-net re-check while the port is gone, and the pause after a failed open.
 * Directory events do the real work; the re-check covers what inotify cannot see (a watched
 * directory that did not exist yet, such as /dev/serial/by-id before the first adapter).
 */
export const PATH_RECHECK_MS = 1000;

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
  let outBlocked = false;

  const onDrain = (): void => {
    outBlocked = false;
    port?.resume();
  };
  const emit = (record: Buffer): void => {
    if (out.write(record) || outBlocked) return;
    outBlocked = true;
    port?.pause(); // the OS buffer, then the DUT's flow, absorbs the rest (DESIGN §2: no unbounded buffers)
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
      let opened: SerialPort;
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
      port = opened;
      const forwarding = forward(opened, ttyPath, onData, signal);
      if (outBlocked) opened.pause(); // attaching 'data' set it flowing; `out` is still full
      const reason = await forwarding;
      port = undefined;
      input?.resume(); // a write pending on the lost port will never drain
      await closePort(opened);
      // Bytes already read but held back by backpressure still belong before the gap marker.
      // read() emits 'data' for each buffered chunk, so onData frames them; bounded by highWaterMark.
      while (opened.readableLength > 0 && opened.read() !== null) {}
      opened.removeAllListeners();
      opened.on('error', ignoreLateError);
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
 * Forwards data until the port is lost (resolves with the reason) or `signal` aborts (undefined).
 * A hung-up tty (unplugged adapter, closed pty master) reads 0 bytes forever, and serialport 13
 * retries that in a tight loop without reporting it (bindings-cpp #162, fix #164 unmerged). So the
 * loss is also detected from the device node or its by-id link vanishing: watched, plus re-checked.
 */
function forward(
  port: SerialPort,
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
      clearInterval(recheck);
      unwatch();
      resolve(reason);
    };
    const onAbort = (): void => finish(undefined);
    const onClose = (error: Error | null): void => finish(error?.message || lastError || 'closed');
    // A write error on a vanishing port comes with a close; keep its text as the gone reason.
    port.on('error', (error: Error) => {
      lastError = error.message;
    });
    port.once('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
    port.on('data', onData);
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

/** The directories whose entries disappear with the port: the link's, its parent, the node's. */
function dirsOf(ttyPath: string): string[] {
  const dirs = [path.dirname(ttyPath), path.dirname(path.dirname(ttyPath))];
  try {
    dirs.push(path.dirname(realpathSync(ttyPath)));
  } catch {
    // Already gone: the link's directory is enough to see it come back.
  }
  return [...new Set(dirs)];
}

/**
 * Watches each of `dirs` that exists, calling `onChange` on any entry change; returns the closer.
 * Missing or failing directories cost only speed: the callers' re-checks still notice.
 */
function watchDirs(dirs: string[], onChange: () => void): () => void {
  const watchers: FSWatcher[] = [];
  for (const dir of dirs) {
    try {
      const watcher = watch(dir, onChange);
      watcher.on('error', () => watcher.close());
      watchers.push(watcher);
    } catch {
      // Not there (yet): see above.
    }
  }
  return () => {
    for (const watcher of watchers) watcher.close();
  };
}

/** A closed port may still report a failed pending write; it has nothing left to tell us. */
function ignoreLateError(): void {}

/**
 * Opens `ttyPath` and discards stale bytes a pty or adapter kept from before (DESIGN §6).
 * bindings-cpp's open already calls tcflush() while setting the baud rate; the explicit flush once
 * open() has completed also drops what arrived meanwhile, and keeps us safe if that ever changes.
 */
async function openPort(ttyPath: string, baudRate: number): Promise<SerialPort> {
  const port = new SerialPort({ path: ttyPath, baudRate, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
  try {
    await new Promise<void>((resolve, reject) => port.flush((error) => (error ? reject(error) : resolve())));
  } catch (error) {
    await closePort(port);
    throw error;
  }
  return port;
}

/** Closes `port` if still open; a close error on a dead device changes nothing for the capture. */
function closePort(port: SerialPort): Promise<void> {
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => port.close(() => resolve()));
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

/**
 * Resolves true once `ttyPath` exists (a dangling by-id link counts as absent), false on abort.
 * Event-driven through directory watches (re-armed on each re-check, since udev removes
 * /dev/serial/by-id with the last adapter), plus a bounded re-check; all released when it settles.
 */
function waitForPath(ttyPath: string, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    let unwatch = (): void => {};
    const finish = (found: boolean): void => {
      if (settled) return;
      settled = true;
      clearInterval(recheck);
      signal.removeEventListener('abort', onAbort);
      unwatch();
      resolve(found);
    };
    const onAbort = (): void => finish(false);
    const look = (): void => {
      stat(ttyPath, (error) => {
        if (!error) finish(true);
      });
    };
    const rearm = (): void => {
      if (settled) return;
      // Arm before looking, so a change during the look is never missed.
      unwatch();
      unwatch = watchDirs(dirsOf(ttyPath), look);
      look();
    };
    const recheck = setInterval(rearm, PATH_RECHECK_MS);
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) return finish(false);
    rearm();
  });
}
