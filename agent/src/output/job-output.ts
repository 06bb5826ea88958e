/**
 * A running job's stdout and stderr on their way into its output log: written on the agent's own
 * thread (captureInline, for the agent's jobs, whose consoles and power actions count every
 * microsecond) or by the output pump's thread (output-pump.ts, for users' jobs, whose output can
 * arrive as fast as a pipe allows and must not hold the event loop that serves everyone else).
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { OutputLog } from './output-log.js';
import { StderrTail } from './stderr-tail.js';

/** What the supervisor needs of a job's output pipes, whoever writes them into the log. */
export interface JobOutput {
  /** Resolves once both pipes are closed and everything they carried is in the log. */
  readonly closed: Promise<void>;
  /** Closes both pipes now (something outside the job still holds them); resolves once done. */
  destroy(): Promise<void>;
  /** The last lines of stderr; complete once `closed` has resolved. */
  readonly stderrTail: StderrTail;
}

/** Called once a log write fails (a full disk): the job is stopped, not silently truncated. */
export type OnWriteError = (err: Error) => void;

/**
 * Appends the process's stdout and stderr to `log` as they come, on this thread, and keeps the
 * last lines of stderr. The child must have been spawned with both as pipes.
 */
export function captureInline(child: ChildProcess, log: OutputLog, onWriteError: OnWriteError): JobOutput {
  const stderrTail = new StderrTail();
  const append = (stream: 'stdout' | 'stderr', chunk: Buffer): void => {
    try {
      log.append(stream, chunk);
    } catch (err) {
      onWriteError(err as Error);
    }
  };
  const stdout = child.stdout!;
  const stderr = child.stderr!;
  stdout.on('data', (chunk: Buffer) => append('stdout', chunk));
  stderr.on('data', (chunk: Buffer) => {
    append('stderr', chunk);
    stderrTail.push(chunk);
  });
  const closed = Promise.all([streamClosed(stdout), streamClosed(stderr)]).then(() => {});
  return {
    closed,
    stderrTail,
    destroy() {
      stdout.destroy();
      stderr.destroy();
      return closed;
    },
  };
}

/** Resolves when the stream has closed (ended or destroyed). */
function streamClosed(s: Readable): Promise<void> {
  if (s.closed || s.destroyed) return Promise.resolve();
  return new Promise((resolve) => s.once('close', () => resolve()));
}
