/**
 * Waits for a USB device node to appear — after a power-on, or after a storage mux switched to the
 * host — instead of sleeping a fixed time and hoping (autokit's 30 s SD-mux delay).
 */
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';
import { JigletError } from '../../protocol/src/errors.js';
import {
  describeMatch,
  type ResolvedDevice,
  type ResolveOptions,
  resolveUsbDevice,
  type UsbMatch,
} from './usb-match.js';

/**
 * Period of the safety-net re-check. Events do the real work; the re-check covers what inotify
 * cannot see (a watch that failed to arm, an inotify queue overflow).
 */
export const DEFAULT_RECHECK_MS = 1000;

/** Options of a wait. */
export interface WaitForDeviceOptions extends ResolveOptions {
  /** Give up (JIGLET_E_DEADLINE_EXCEEDED) after this long. */
  timeoutMs: number;
  /** Safety-net re-check period; default `DEFAULT_RECHECK_MS`. */
  recheckMs?: number;
  /** Called once when the first look found nothing and the wait is armed (e.g. to log "waiting for …"). */
  onPending?: () => void;
}

/** Directories whose changes can mean "the device appeared": /dev itself and udev's link dirs. */
function watchedDirs(options: ResolveOptions): string[] {
  const devRoot = options.devRoot ?? '/dev';
  const base = path.join(devRoot, options.kind === 'block' ? 'disk' : 'serial');
  return [devRoot, base, path.join(base, 'by-id'), path.join(base, 'by-path')];
}

/**
 * Resolves with the device once it exists, watching /dev for changes plus a bounded re-check.
 * Rejects with JIGLET_E_DEADLINE_EXCEEDED naming the awaited device; every watcher and timer is
 * released when it settles.
 */
export function waitForDevice(match: UsbMatch, options: WaitForDeviceOptions): Promise<ResolvedDevice> {
  const { timeoutMs, recheckMs = DEFAULT_RECHECK_MS } = options;
  return new Promise<ResolvedDevice>((resolve, reject) => {
    const watchers = new Map<string, FSWatcher>();
    let settled = false;
    let checking = false;
    let checkAgain = false;
    let reportedPending = false;

    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearInterval(recheck);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
      settle();
    };

    const arm = (dir: string): void => {
      if (watchers.has(dir)) return;
      try {
        const watcher = watch(dir, () => check());
        // A broken watch only costs speed: the re-check still finds the device.
        watcher.on('error', () => {
          watcher.close();
          watchers.delete(dir);
        });
        watchers.set(dir, watcher);
      } catch {
        // Not there yet (/dev/serial appears with the first serial device): `dir`'s parent is
        // watched, and the next check arms this one.
      }
    };

    const check = (): void => {
      if (settled) return;
      if (checking) {
        checkAgain = true; // an event arrived mid-look: look once more when this one ends
        return;
      }
      checking = true;
      // Arm before looking, so a change during the look is never missed.
      for (const dir of watchedDirs(options)) arm(dir);
      resolveUsbDevice(match, options).then(
        (device) => {
          checking = false;
          if (device) return finish(() => resolve(device));
          if (!reportedPending && !settled) {
            reportedPending = true;
            options.onPending?.();
          }
          if (checkAgain) {
            checkAgain = false;
            check();
          }
        },
        (error: unknown) => {
          checking = false;
          finish(() => reject(error));
        },
      );
    };

    const deadline = setTimeout(() => {
      const where = options.devRoot ?? '/dev';
      const message = `no ${describeMatch(match, options.kind)} appeared under ${where} within ${timeoutMs} ms`;
      finish(() => reject(new JigletError('JIGLET_E_DEADLINE_EXCEEDED', message)));
    }, timeoutMs);
    const recheck = setInterval(check, recheckMs);
    check();
  });
}
