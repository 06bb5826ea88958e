/**
 * A real pty pair for serial tests. Node has no pty API and native addons cannot be installed
 * here, so a small python3 process owns the master: bytes written to its stdin go to the "DUT"
 * side of the pty, what the capture writes to the slave comes out of its stdout. Killing it closes
 * the master, which the slave sees as a hangup — the same EIO a vanished USB-serial adapter gives.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';

// A full pty raises no event anywhere, so the helper itself turns "the master stayed unwritable
// for 100 ms with DUT bytes pending" into a `blocked` line on stderr: tests use it as the event
// "the capture stopped reading". A capture that keeps reading never produces it.
// SIGUSR1 asks for an "unread N" line: the bytes in the pty that no reader of the slave has
// taken yet (FIONREAD on the helper's own slave descriptor), for "the capture has read it all".
const HELPER = String.raw`
import os, sys, tty, select, errno, fcntl, signal, struct, termios
m, s = os.openpty()
tty.setraw(s)
fcntl.fcntl(m, fcntl.F_SETFL, fcntl.fcntl(m, fcntl.F_GETFL) | os.O_NONBLOCK)
err = sys.stderr
def unread(signum, frame):
    n = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]
    os.write(2, b"unread %d\n" % n)  # not err: the handler may run inside its write
signal.signal(signal.SIGUSR1, unread)
err.write(os.ttyname(s) + "\n"); err.flush()
pending = b""
blocked = False
while True:
    want_in = [m] + ([] if pending else [0])
    r, w, _ = select.select(want_in, [m] if pending else [], [], 0.1 if pending else None)
    if pending and not r and not w and not blocked:
        blocked = True
        err.write("blocked\n"); err.flush()
    if 0 in r:
        d = os.read(0, 65536)
        if not d:
            break
        pending = d
    if m in r:
        try:
            d = os.read(m, 65536)
        except OSError:
            d = b""
        if d:
            os.write(1, d)
    if pending:
        try:
            n = os.write(m, pending)
            pending = pending[n:]
            blocked = False
            err.write("wrote %d\n" % n); err.flush()
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
`;

/** A running pty helper: its stdin is the DUT's transmit side, its stdout the DUT's receive side. */
export interface PtyPair {
  /** The slave tty path (/dev/pts/N) the capture opens. */
  readonly slavePath: string;
  /** The helper process; write DUT output to `child.stdin`. */
  readonly child: ChildProcessWithoutNullStreams;
  /** Everything the capture wrote to the port so far. */
  received(): Buffer;
  /** Bytes the helper has put into the pty so far. */
  written(): number;
  /** Bytes in the pty that the capture has not read yet, asked of the helper now. */
  unread(): Promise<number>;
  /** True once the helper found the pty full (nobody reading the slave). */
  wasBlocked(): boolean;
  /** Resolves once `predicate` holds, re-checked on every helper output; rejects after `timeoutMs`. */
  until(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** Kills the helper and waits until it has exited. */
  kill(): Promise<void>;
}

/** Starts a helper and resolves once it has printed its slave path. */
export async function openPtyPair(): Promise<PtyPair> {
  const child = spawn('python3', ['-c', HELPER], { stdio: 'pipe' });
  const exited = once(child, 'exit');
  const received: Buffer[] = [];
  const changes = new EventEmitter();
  child.stdout.on('data', (b: Buffer) => {
    received.push(b);
    changes.emit('change');
  });
  // EPIPE when a test writes after killing the helper is expected, not a failure.
  child.stdin.on('error', () => undefined);
  let slavePath = '';
  let written = 0;
  let blocked = false;
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!slavePath) slavePath = line;
      else if (line === 'blocked') blocked = true;
      else if (line.startsWith('wrote ')) written += Number(line.slice(6));
      else if (line.startsWith('unread ')) changes.emit('unread', Number(line.slice(7)));
    }
    changes.emit('change');
  });
  child.on('exit', () => changes.emit('change'));

  const until = (what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        changes.off('change', check);
        resolve();
      };
      const timer = setTimeout(() => {
        changes.off('change', check);
        reject(new Error(`pty helper: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      changes.on('change', check);
      check();
    });

  await until('the slave path', () => slavePath !== '' || child.exitCode !== null);
  if (!slavePath) throw new Error(`pty helper exited early (${child.exitCode})`);
  return {
    slavePath,
    child,
    received: () => Buffer.concat(received),
    written: () => written,
    wasBlocked: () => blocked,
    unread: async () => {
      const answer = once(changes, 'unread');
      child.kill('SIGUSR1');
      const [count] = (await answer) as [number];
      return count;
    },
    until,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
