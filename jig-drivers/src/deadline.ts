/**
 * Deadlines for hardware calls. Every network request, child process and USB transfer a driver
 * makes runs under one of these, so a hung device turns into a coded error instead of a hung job.
 */
import { JigletError } from '../../protocol/src/errors.js';

/** The JIGLET_E_DEADLINE_EXCEEDED error for `what` not finishing within `ms`. */
export function deadlineExceeded(what: string, ms: number): JigletError {
  return new JigletError('JIGLET_E_DEADLINE_EXCEEDED', `${what}: no answer within ${ms} ms`);
}

/**
 * Runs `work` with a signal that aborts (reason: a deadline error) after `ms`. `work` must reject
 * with `signal.reason` once the signal aborts; the timer is always cleared so nothing is left behind.
 */
export async function withDeadline<T>(
  ms: number,
  what: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(deadlineExceeded(what, ms)), ms);
  try {
    return await work(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Settles like `promise`, or rejects with `signal.reason` when the signal aborts first. For calls
 * that cannot be cancelled themselves (a libusb transfer): the caller stops waiting, and the
 * call's own timeout ends it later.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Shortens device output for an error message: trimmed, and at most `max` characters. */
export function trimOutput(text: string, max = 500): string {
  const trimmed = text.trim();
  return trimmed.length <= max
    ? trimmed
    : `${trimmed.slice(0, max)}… (${trimmed.length - max} more characters)`;
}
