/**
 * Waiting for a device node (a tty, a block device, a by-id link) to exist — after a power-on or
 * a mux switch — on directory events, with a bounded safety-net re-check, never a fixed sleep.
 */
import { type FSWatcher, realpathSync, stat, watch } from 'node:fs';
import path from 'node:path';
import { withDeadline } from './deadline.js';

/** Period of the safety-net re-check (inotify cannot see a directory that does not exist yet). */
export const PATH_RECHECK_MS = 1000;

/** The directories whose entries disappear with the port: the link's, its parent, the node's. */
export function dirsOf(ttyPath: string): string[] {
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
export function watchDirs(dirs: string[], onChange: () => void): () => void {
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

/**
 * Resolves true once `ttyPath` exists (a dangling by-id link counts as absent), false on abort.
 * Event-driven through directory watches (re-armed on each re-check, since udev removes
 * /dev/serial/by-id with the last adapter), plus a bounded re-check; all released when it settles.
 */
export function waitForPath(ttyPath: string, signal: AbortSignal): Promise<boolean> {
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

/** Resolves once `devicePath` exists; JIGLET_E_DEADLINE_EXCEEDED naming it after `timeoutMs`. */
export async function waitForPathWithin(
  devicePath: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  await withDeadline(timeoutMs, `waiting for ${devicePath} to appear`, async (deadline) => {
    const both = signal ? AbortSignal.any([signal, deadline]) : deadline;
    if (!(await waitForPath(devicePath, both))) throw both.reason;
  });
}
