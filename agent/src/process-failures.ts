/**
 * The last line of the agent's failure containment (README, "Failure containment"). The rule: a
 * failure while serving one request, job or lease is logged and contained; it never ends the
 * process. It is kept at the source — every timer callback, event listener and promise nobody
 * awaits has its own catch that logs — and these process-level handlers only catch what a bug
 * let through.
 *
 * - An unhandled rejection is an async function whose failure nobody awaited. What it touched is
 *   as consistent as after any caught error, so it is logged, loudly, and the agent goes on.
 * - An uncaught exception is a throw out of a callback. Node's advice is to exit, but exiting
 *   here ends every job on the jig (a restarted agent marks them lost and kills them), so one bug
 *   in one stream's callback would cost every user's run. The agent logs it at `fatal` and goes
 *   on; only a burst of them (the agent failing in a loop) ends the process, for the service
 *   manager to restart it with state read back from disk.
 */
import type { Logger } from 'pino';

/** More uncaught exceptions than this within EXCEPTION_WINDOW_MS end the process. */
export const MAX_EXCEPTIONS = 10;
export const EXCEPTION_WINDOW_MS = 60_000;
/** sysexits EX_SOFTWARE: an internal error. */
export const EXIT_SOFTWARE = 70;

/** Installs the handlers; returns the function that removes them. */
export function containProcessFailures(log: Logger, exit: (code: number) => void = process.exit): () => void {
  const recent: number[] = [];
  const onRejection = (reason: unknown): void => {
    log.error({ err: reason }, 'unhandled promise rejection (a bug: contained, the agent goes on)');
  };
  const onException = (err: Error, origin: string): void => {
    const now = Date.now();
    recent.push(now);
    while (recent.length > 0 && recent[0]! < now - EXCEPTION_WINDOW_MS) recent.shift();
    if (recent.length > MAX_EXCEPTIONS) {
      log.fatal(
        { err, origin, count: recent.length },
        `${recent.length} uncaught exceptions within ${EXCEPTION_WINDOW_MS} ms: exiting so the agent is restarted`,
      );
      exit(EXIT_SOFTWARE);
      return;
    }
    log.fatal({ err, origin }, 'uncaught exception (a bug: contained, the agent goes on)');
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
