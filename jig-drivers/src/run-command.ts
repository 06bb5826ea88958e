/**
 * Runs a short hardware command (uhubctl, gpioset, a vendor tool) under a deadline. The command
 * gets its own process group, so on timeout the whole group is killed — a shell wrapper's
 * children included, not just the shell.
 */
import { spawn } from 'node:child_process';
import { failedPrecondition, JigletError } from '../../protocol/src/errors.js';
import { deadlineExceeded, trimOutput } from './deadline.js';

/** Output kept per stream; hardware tools print a few lines. */
const MAX_OUTPUT_BYTES = 64 * 1024;

/** What a finished command printed. */
export interface CommandResult {
  /** Standard output (at most 64 KiB). */
  stdout: string;
  /** Standard error (at most 64 KiB). */
  stderr: string;
}

/** Options of one command run. */
export interface CommandOptions {
  /** Deadline; past it the process group gets SIGKILL. */
  timeoutMs: number;
  /** Who runs it, for error messages (e.g. `command power switch of rpi4-a`). */
  what: string;
}

/** Runs argv[0] with the rest as arguments; resolves on exit 0, else throws with stderr. */
export type CommandRunner = (argv: readonly string[], options: CommandOptions) => Promise<CommandResult>;

/** Collects a stream's text up to the cap. */
function collector(): { push: (chunk: Buffer) => void; text: () => string } {
  const chunks: Buffer[] = [];
  let size = 0;
  return {
    push: (chunk) => {
      if (size < MAX_OUTPUT_BYTES) chunks.push(chunk);
      size += chunk.length;
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** The default `CommandRunner`: spawn without a shell, in a new process group. */
export const runCommand: CommandRunner = (argv, options) =>
  new Promise<CommandResult>((resolve, reject) => {
    const [file, ...args] = argv;
    if (file === undefined) throw new JigletError('JIGLET_E_INTERNAL', `${options.what}: empty command`);
    const label = `${options.what}: ${argv.join(' ')}`;
    // detached = setsid(): the child leads a new process group we can signal as a whole.
    const child = spawn(file, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout = collector();
    const stderr = collector();
    child.stdout.on('data', stdout.push);
    child.stderr.on('data', stderr.push);

    const timer = setTimeout(() => {
      // SIGKILL at once: a hung power command has nothing to clean up, and a grace period would
      // only stretch the deadline the caller asked for.
      const killed = child.pid === undefined ? 'never started' : killGroup(child.pid);
      // Stop reading: a grandchild that escaped the group (setsid) may hold the pipes open forever.
      child.stdout.destroy();
      child.stderr.destroy();
      const said = trimOutput(stderr.text());
      const error = deadlineExceeded(label, options.timeoutMs);
      error.message += `; ${killed}${said ? `; stderr: ${said}` : ''}`;
      reject(error);
    }, options.timeoutMs);

    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        error.code === 'ENOENT'
          ? failedPrecondition(`${label}: ${file} is not installed or not on PATH`)
          : new JigletError('JIGLET_E_UNAVAILABLE', `${label}: cannot run: ${error.message}`),
      );
    });
    // 'close' (not 'exit'): all output has been read by then.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve({ stdout: stdout.text(), stderr: stderr.text() });
      const said = trimOutput(stderr.text()) || trimOutput(stdout.text()) || '(no output)';
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      reject(new JigletError('JIGLET_E_UNAVAILABLE', `${label}: ${how}: ${said}`));
    });
  });

/** Sends SIGKILL to a process group and says what happened, for the timeout message. */
function killGroup(pgid: number): string {
  try {
    process.kill(-pgid, 'SIGKILL');
    return 'killed its process group';
  } catch (error) {
    // ESRCH: the group is already gone, which is what we wanted.
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ESRCH'
      ? 'its process group had already exited'
      : `could not kill its process group (${code})`;
  }
}

/** Runs a configured shell command line (`sh -c`), with the same deadline and group kill. */
export function runShellCommand(
  command: string,
  options: CommandOptions,
  runner: CommandRunner = runCommand,
): Promise<CommandResult> {
  return runner(['/bin/sh', '-c', command], options);
}
