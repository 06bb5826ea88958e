/**
 * What happens on the bench, as it happens: job state changes, power switches, expect results,
 * health changes. One bus per agent, owned by the composition root; the run record and the
 * metrics listen to it instead of each part knowing about them. Lease changes have their own
 * source (LeaseManager's 'change'); serial bytes come from each capture's SerialMonitor.
 */
import { EventEmitter } from 'node:events';
import type { JobStateName } from '../jobs/job-state.js';

export type AgentEvent =
  | {
      kind: 'job';
      at: number;
      job: string;
      owner: string;
      dut?: string;
      command: string;
      /** What the job is for ("power on"), for the agent's own jobs. */
      title?: string;
      state: JobStateName;
      exitCode?: number;
      signal?: string;
      stopReason?: string;
    }
  | {
      kind: 'power';
      at: number;
      dut: string;
      action: string;
      state: 'on' | 'off' | 'unknown';
      /** The driver job that served it (a DUT's long-lived power driver serves many). */
      job: string;
      by: string;
      /** When the action began (after its wait in the DUT's power queue): its span is startedAt → at. */
      startedAt?: number;
      /** Why the action failed (the state is `unknown` then). */
      error?: string;
    }
  | {
      kind: 'flash';
      at: number;
      dut: string;
      job: string;
      phase: 'started' | 'done' | 'failed';
      image: string;
    }
  | {
      kind: 'expect';
      at: number;
      dut: string;
      pattern: string;
      by: string;
      matched: boolean;
      line?: string;
      lineOffset?: number;
    }
  | { kind: 'health'; at: number; dut: string; state: string; reason: string }
  | {
      kind: 'ssh';
      at: number;
      dut: string;
      /** What happened to the DUT's SSH host key, or a copy that ran. */
      change: 'host-key-learnt' | 'host-key-relearnt' | 'host-key-refused' | 'host-key-forgotten' | 'copy';
      detail: string;
    }
  | {
      kind: 'exec';
      at: number;
      dut: string;
      command: string;
      by: string;
      exitCode: number;
      timedOut: boolean;
      durationMs: number;
      /** The transport: the serial console (absent, as before SSH existed) or 'ssh'. */
      via?: 'ssh';
    }
  | {
      kind: 'goto';
      at: number;
      dut: string;
      /** The goal, and the step taken toward it ("power on", "login", "already shell", ...). */
      goal: string;
      step: string;
      detail: string;
      by: string;
      durationMs: number;
      ok: boolean;
    };

type Listener = (event: AgentEvent) => void;

export class AgentEvents {
  readonly #emitter = new EventEmitter();
  readonly #onListenerError: (err: unknown, event: AgentEvent) => void;

  /** `onListenerError` hears of a listener that threw (default: nothing). */
  constructor(onListenerError: (err: unknown, event: AgentEvent) => void = () => undefined) {
    this.#onListenerError = onListenerError;
    // Each follower of the record or metrics is one listener; there is no leak to warn about.
    this.#emitter.setMaxListeners(0);
  }

  /**
   * Tells every listener. Publishers are in the middle of their own work (the supervisor's state
   * change): a listener that throws is reported and the others still hear the event.
   */
  publish(event: AgentEvent): void {
    for (const listener of this.#emitter.listeners('event') as Listener[]) {
      try {
        listener(event);
      } catch (err) {
        this.#onListenerError(err, event);
      }
    }
  }

  /** Listens; returns the function that stops listening. */
  subscribe(listener: Listener): () => void {
    this.#emitter.on('event', listener);
    return () => this.#emitter.off('event', listener);
  }
}
