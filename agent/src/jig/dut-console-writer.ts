/**
 * The one writer of a DUT's console: who holds it, under which lease, and how it is taken over
 * (an admin's right: a forgotten console must not lock a DUT) or detached (its lease ended, the
 * DUT was leased to someone else, the agent is shutting down). A detached writer is told why
 * through its abort signal.
 */
import type { Writable } from 'node:stream';
import { failedPrecondition, JigletError, permissionDenied } from '../../../protocol/src/errors.js';
import type { Identity } from '../auth/identity.js';
import { can } from '../auth/permissions.js';

/** The attached console writer. */
export interface ConsoleWriter {
  readonly who: Identity;
  readonly since: number;
  /** The lease it was attached under (undefined on a DUT that was not leased): its end detaches it. */
  readonly lease: string | undefined;
  /** Aborted when an admin takes the console over or its lease ends; the reason says why. */
  readonly signal: AbortSignal;
  /** The capture job's stdin (changes if the capture restarts). */
  input(): Writable;
  release(): void;
}

type HeldWriter = ConsoleWriter & { controller: AbortController };

/** Holds the console writer of one DUT. */
export class ConsoleWriterSlot {
  #writer: HeldWriter | undefined;

  constructor(readonly dutName: string) {}

  /** The console writer attached now, if any. */
  get current(): ConsoleWriter | undefined {
    return this.#writer;
  }

  /**
   * Attaches `who` as the one writer, under `lease` when the DUT is leased (the caller has checked
   * that `who` holds it). The writer taken over from is told who took it. `input` answers the
   * capture's stdin at the time of each write.
   */
  attach(who: Identity, takeOver: boolean, lease: string | undefined, input: () => Writable): ConsoleWriter {
    const dut = this.dutName;
    const held = this.#writer;
    if (held) {
      if (!takeOver) {
        throw failedPrecondition(
          `the console of ${dut} is in use by ${held.who.name} since ${new Date(held.since).toISOString()}; read it with "jigctl serial tail -f --dut ${dut}"${can(who.role, 'console.takeover') ? ', or take it over with --take-over' : ''}`,
        );
      }
      if (!can(who.role, 'console.takeover')) {
        throw permissionDenied(`${who.name} (role ${who.role}) may not take over the console of ${dut}`);
      }
      held.controller.abort(
        new JigletError('JIGLET_E_TAKEN_OVER', `${who.name} took over the console of ${dut}`),
      );
      this.#writer = undefined;
    }
    const controller = new AbortController();
    const writer: HeldWriter = {
      who,
      lease,
      since: Date.now(),
      signal: controller.signal,
      controller,
      input,
      release: (): void => {
        if (this.#writer === writer) this.#writer = undefined;
      },
    };
    this.#writer = writer;
    return writer;
  }

  /** Detaches the writer, if `which` says it is the one to go, telling it `why`. */
  detach(why: JigletError, which: (writer: ConsoleWriter) => boolean = () => true): void {
    const writer = this.#writer;
    if (!writer || !which(writer)) return;
    writer.controller.abort(why);
    this.#writer = undefined;
  }
}
