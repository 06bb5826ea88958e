/**
 * Serial capture defaults, in a module of their own so `jig-driver` can name them in its option
 * table without loading the capture (and serialport's native addon) for a power action.
 */

/** How long a gone port is awaited before each `waiting` event, in ms (the capture itself never gives up). */
export const DEFAULT_REOPEN_TIMEOUT_MS = 60_000;
