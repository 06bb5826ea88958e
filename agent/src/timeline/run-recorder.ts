/**
 * The run record: every event that concerns a DUT — job state changes, power switches, flashes
 * and their progress, expect results, health changes, lease grants and ends, serial capture
 * starts — appended as it happens to that DUT's journal in `<state>/records/`, and every lease
 * to the lease index, so a lease or job can be reported on after it ended, also after a restart.
 *
 * Serial bytes are not copied: the capture logs already keep them, timestamped, in the state
 * directory; the journal keeps marks of where each capture log stood, so a reader starts decoding
 * near the span it wants. A recorder failure (a full disk) is logged and never reaches the code
 * that published the event.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AgentEvent, AgentEvents } from '../events/agent-events.js';
import type { DutRuntime } from '../jig/dut-runtime.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { SerialMonitor } from '../jig/serial-monitor.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { LeaseChange, LeaseManager } from '../leases/lease-manager.js';
import { sampleFlash } from './flash-sampler.js';
import { type CaptureEntry, entryOfEvent, type JournalEntry, type LeaseEntry } from './journal-entry.js';
import { JournalFile } from './journal-file.js';

/**
 * A DUT journal is rotated at this size, keeping one old file: at most 32 MiB per DUT, which
 * holds months of leases on a busy DUT (an entry is ~200 bytes; flash progress ≤ 2 a second).
 */
export const DUT_JOURNAL_BYTES = 16 * 1024 * 1024;
/** The lease index is rotated at this size (one old file kept): ~40 000 leases. */
export const LEASE_INDEX_BYTES = 4 * 1024 * 1024;
/** Folder of the journals inside the state directory. */
export const RECORDS_DIR = 'records';
/** Name of the lease index journal; DUT names cannot contain '_' (see the jig description). */
export const LEASE_INDEX = '_leases';

/** Owns the journals and every listener that feeds them. */
export class RunRecorder {
  readonly dir: string;
  readonly #log: Logger;
  readonly #supervisor: Supervisor;
  readonly #dutBytes: number;
  readonly #journals = new Map<string, JournalFile>();
  readonly #leaseIndex: JournalFile;
  readonly #unhooks: (() => void)[] = [];
  readonly #samplers = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  #jig: JigRuntime | undefined;
  #failing = false;
  #closed = false;

  /**
   * Starts listening at once: made before the jig runtime starts, so what happens while it
   * starts (capture jobs, a lease that expired while the agent was down) is recorded too.
   */
  constructor(opts: {
    stateDir: string;
    events: AgentEvents;
    leases: LeaseManager;
    supervisor: Supervisor;
    log: Logger;
    dutJournalBytes?: number;
    leaseIndexBytes?: number;
  }) {
    this.dir = join(opts.stateDir, RECORDS_DIR);
    mkdirSync(this.dir, { recursive: true });
    this.#log = opts.log.child({ part: 'run-record' });
    this.#supervisor = opts.supervisor;
    this.#dutBytes = opts.dutJournalBytes ?? DUT_JOURNAL_BYTES;
    this.#leaseIndex = new JournalFile(this.dir, LEASE_INDEX, opts.leaseIndexBytes ?? LEASE_INDEX_BYTES);
    this.#unhooks.push(opts.events.subscribe((event) => this.#safely(() => this.#onEvent(event))));
    const onLease = (change: LeaseChange): void => this.#safely(() => this.#onLease(change));
    opts.leases.on('change', onLease);
    this.#unhooks.push(() => opts.leases.off('change', onLease));
  }

  /** Follows the DUTs' serial captures once the jig runtime runs. */
  attachJig(jig: JigRuntime): void {
    if (this.#closed) return;
    this.#jig = jig;
    for (const dut of jig.list()) {
      const onCapture = (monitor: SerialMonitor): void =>
        this.#safely(() => this.#capture(dut.dut.name, monitor, 'started'));
      dut.on('capture', onCapture);
      this.#unhooks.push(() => dut.off('capture', onCapture));
      this.#safely(() => this.#mark(dut));
    }
  }

  /** The journal of one DUT (for reading; appends go through the recorder). */
  journal(dut: string): JournalFile {
    let journal = this.#journals.get(dut);
    if (!journal) {
      journal = new JournalFile(this.dir, dut, this.#dutBytes);
      this.#journals.set(dut, journal);
    }
    return journal;
  }

  /** The lease index (for reading). */
  get leaseIndex(): JournalFile {
    return this.#leaseIndex;
  }

  /** The jig runtime, once attached: the live captures help a reader seek. */
  get jig(): JigRuntime | undefined {
    return this.#jig;
  }

  /** Removes every listener, ends flash sampling (recording its last point), closes the files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const unhook of this.#unhooks.splice(0)) unhook();
    this.#stop.abort();
    await Promise.allSettled(this.#samplers);
    for (const journal of this.#journals.values()) journal.close();
    this.#leaseIndex.close();
  }

  #onEvent(event: AgentEvent): void {
    const entry = entryOfEvent(event);
    if (!entry) return;
    this.#append(entry);
    if (entry.kind === 'job' && entry.state === 'running') this.#markDut(entry.dut);
    if (entry.kind === 'flash' && entry.phase === 'started') this.#sample(entry.dut, entry.job);
  }

  #onLease(change: LeaseChange): void {
    if (change.kind !== 'granted' && change.kind !== 'ended') return;
    const { lease } = change;
    const entry: LeaseEntry = {
      // A grant at the lease's own time, so a held lease and its record agree on where it began.
      at: change.kind === 'granted' ? lease.acquiredAt : Date.now(),
      kind: 'lease',
      dut: lease.dut,
      lease: lease.id,
      change: change.kind,
      holder: lease.holder,
      token: lease.token,
      ...(change.kind === 'ended' ? { reason: change.reason } : {}),
    };
    this.#leaseIndex.append(entry);
    this.#append(entry);
    if (change.kind === 'granted') this.#markDut(lease.dut);
  }

  /** Follows a flash job's progress lines into the journal until the job ends. */
  #sample(dut: string, job: string): void {
    const log = this.#supervisor.get(job).output();
    const run = sampleFlash({
      log,
      dut,
      job,
      signal: this.#stop.signal,
      // The last point, read after close() began, still belongs in the journal.
      record: (sample) => this.#append(sample),
    })
      .catch((err: unknown) => this.#log.warn({ err, job }, 'could not read the progress of a flash'))
      .finally(() => this.#samplers.delete(run));
    this.#samplers.add(run);
  }

  #markDut(name: string): void {
    const dut = this.#jig?.list().find((d) => d.dut.name === name);
    if (dut) this.#mark(dut);
  }

  #mark(dut: DutRuntime): void {
    if (dut.capture) this.#capture(dut.dut.name, dut.capture, 'mark');
  }

  #capture(dut: string, monitor: SerialMonitor, why: CaptureEntry['why']): void {
    const offset = why === 'started' ? 0 : monitor.boundary;
    this.#append({ at: Date.now(), kind: 'capture', dut, job: monitor.jobId, offset, why });
  }

  #append(entry: JournalEntry): void {
    this.journal(entry.dut).append(entry);
  }

  /** Runs a journal write; a failure is logged once per streak, never thrown at the publisher. */
  #safely(fn: () => void): void {
    if (this.#closed) return;
    try {
      fn();
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#log.error({ err }, 'the run record could not be written; events are lost');
      this.#failing = true;
    }
  }
}
