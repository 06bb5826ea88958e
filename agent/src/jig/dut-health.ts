/**
 * One DUT's health, LAVA-style: `good`, `bad` (a health check failed: quarantined until an admin
 * sets it back) or `maintenance` (an admin took it out of service). Only a good DUT may be leased
 * (through the lease manager's gate). With a `healthCheck`, the agent runs the check after every
 * N leases and/or every N hours, holding the DUT's lease itself while it runs.
 *
 * Ordering: the lease manager hands a freed DUT to a waiting claim synchronously, inside the very
 * call that ended the lease. When that end makes a check due, the gate starts saying "running a
 * health check" in the same tick, so waiting claims keep waiting; the check runs once the previous
 * holder's clean-up (jobs stopped, safe state) is done, and releasing the check's lease serves the
 * first waiter — or nobody, if the check quarantined the DUT. A check goes before every waiter.
 */

import type { Logger } from 'pino';
import type { HealthCheckConfig } from '../../../jig-drivers/src/jig-description.js';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { Lease, LeaseManager } from '../leases/lease-manager.js';
import type { DutHealthFile, DutHealthRecord, HealthState } from './dut-health-file.js';
import { type HealthCheckResult, runHealthCheckJob } from './health-check-job.js';

/** Holder of the leases the agent takes for health checks, and owner of the check jobs. */
export const HEALTH_HOLDER = '@jiglet-health';
/** Room beyond the check's own timeout for stopping it and saving the result before the lease could expire. */
const LEASE_MARGIN_MS = 60_000;
/** setTimeout's longest delay; an `everyHours` further out is re-armed in steps. */
const MAX_TIMER_MS = 2_147_483_647;
const HOUR_MS = 3600 * 1000;

/** What a check decided. */
export interface HealthCheckOutcome {
  jobId: string;
  passed: boolean;
  /** The DUT's health after the check. */
  record: Readonly<DutHealthRecord>;
}

/** What a DUT's health works with. */
export interface DutHealthOptions {
  leases: LeaseManager;
  supervisor: Supervisor;
  file: DutHealthFile;
  /** Where the DUT is described, for messages. */
  source: string;
  log: Logger;
  events: AgentEvents;
}

/** The health of one DUT, its check and the timer that makes the check due. */
export class DutHealth {
  readonly #name: string;
  readonly #config: HealthCheckConfig | undefined;
  readonly #opts: DutHealthOptions;
  readonly #record: DutHealthRecord;
  /** Bumped by every state an admin sets, so a check that ran meanwhile does not overrule the admin. */
  #generation = 0;
  /** A check is due and waits for the previous holder's clean-up; the gate holds claims back. */
  #due = false;
  #settling: Promise<void> = Promise.resolve();
  #running: Promise<HealthCheckOutcome> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(name: string, config: HealthCheckConfig | undefined, opts: DutHealthOptions) {
    this.#name = name;
    this.#config = config;
    this.#opts = { ...opts, log: opts.log.child({ dut: name, part: 'health' }) };
    this.#record = opts.file.load(Date.now());
  }

  /** The current health (a live view; copy it to keep it). */
  get record(): Readonly<DutHealthRecord> {
    return this.#record;
  }

  /** Whether the DUT has a health check in the jig description. */
  get hasCheck(): boolean {
    return this.#config !== undefined;
  }

  /**
   * Arms the `everyHours` timer and runs a check that came due while the agent was down. Called
   * after leftover leases have been dealt with, so a check never races one of them.
   */
  start(): void {
    if (!this.#kick()) this.#arm();
  }

  /** The lease gate: why the DUT may not be claimed now, or undefined when it may. */
  gate(): string | undefined {
    const name = this.#name;
    const { state, reason } = this.#record;
    if (state === 'bad')
      return `${name} is quarantined: ${reason || 'no reason given'} (an admin sets it back with jigctl dut state ${name} good)`;
    if (state === 'maintenance') return `${name} is in maintenance: ${reason || 'no reason given'}`;
    if (this.#running || this.#due) return `${name} is running a health check`;
    return undefined;
  }

  /**
   * Sets the state by hand. A lease held now is not ended: the state only stops new claims.
   * Back to good, a check that is due runs first, then waiting claims are served.
   */
  setState(state: HealthState, reason: string, by: string): Readonly<DutHealthRecord> {
    this.#generation++;
    Object.assign(this.#record, { state, reason, by, changedAt: Date.now() });
    this.#opts.file.save(this.#record);
    this.#announce();
    this.#opts.log.info({ state, reason, by }, `${this.#name} set to ${state}`);
    if (state === 'good' && !this.#kick()) {
      this.#arm();
      this.#opts.leases.retry(this.#name);
    }
    return this.#record;
  }

  /**
   * A lease of the DUT ended (called synchronously from the lease manager's 'ended', before it
   * serves waiting claims). Counts it, and if that makes a check due, holds claims back until the
   * check has run; `settled` is the previous holder's clean-up.
   */
  leaseEnded(lease: Lease, settled: Promise<void>): void {
    if (lease.holder !== HEALTH_HOLDER) {
      this.#record.leasesSinceCheck++;
      // Only a check that counts leases needs the count to survive a restart; saving on every
      // lease end would put a file rename on the release path of every DUT.
      if (this.#config?.everyJobs !== undefined) {
        // Called as a lease ends (often from its expiry timer): a full disk loses the count's
        // persistence, not the end of the lease or the check it may make due.
        try {
          this.#opts.file.save(this.#record);
        } catch (err) {
          this.#opts.log.error({ err }, `could not save the health record of ${this.#name}`);
        }
      }
    }
    if (this.#due) return;
    const cleanedUp = settled.catch(() => undefined);
    if (!this.#mayStart(false)) {
      this.#settling = cleanedUp;
      return;
    }
    this.#due = true;
    this.#settling = cleanedUp.then(() => {
      this.#due = false;
      // Nothing to run after all (a manual check came first, an admin changed the state): the
      // claims held back by the gate are served now.
      if (!this.#kick()) this.#opts.leases.retry(this.#name);
    });
  }

  /**
   * Runs the check now, whatever the state (an admin checking a repaired DUT): its result sets the
   * state. Joins a check that is running already. FAILED_PRECONDITION without a check or while
   * someone else holds the DUT.
   */
  async checkNow(): Promise<HealthCheckOutcome> {
    if (!this.#config) {
      throw failedPrecondition(
        `${this.#name} has no health check: add healthCheck (command, everyJobs or everyHours) to it in ${this.#opts.source}`,
      );
    }
    // The previous holder's jobs are stopped and the DUT made safe before anything else runs on it.
    await this.#settling;
    if (this.#running) return this.#running;
    const held = this.#opts.leases.list().find((l) => l.dut === this.#name);
    if (held) {
      throw failedPrecondition(
        `${this.#name} is leased by ${held.holder} until ${new Date(held.expiresAt).toISOString()}; check it once that lease has ended`,
      );
    }
    if (this.#closed) throw new JigletError('JIGLET_E_UNAVAILABLE', 'the agent is shutting down');
    return this.#startCheck('requested');
  }

  /** Stops the timer; a check running now is stopped by the supervisor's shutdown, and runs again after a restart. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Starts a due check if nothing stands in its way; true when one started. */
  #kick(): boolean {
    // While due, the check is already promised to run after the previous holder's clean-up.
    if (this.#due || !this.#mayStart(true)) return false;
    try {
      void this.#startCheck('due').catch((err: unknown) =>
        this.#opts.log.error({ err }, 'the health check could not run'),
      );
      return true;
    } catch (err) {
      this.#opts.log.error({ err }, 'the health check could not take the DUT');
      return false;
    }
  }

  /** An automatic check may start: configured, good, none running, (and, if `free`, not leased). */
  #mayStart(free: boolean): boolean {
    if (!this.#config || this.#closed || this.#running || this.#record.state !== 'good') return false;
    if (!this.#isDue()) return false;
    return !free || !this.#opts.leases.list().some((l) => l.dut === this.#name);
  }

  #isDue(): boolean {
    const config = this.#config;
    if (!config) return false;
    if (config.everyJobs !== undefined && this.#record.leasesSinceCheck >= config.everyJobs) return true;
    return config.everyHours !== undefined && Date.now() >= this.#nextByTime();
  }

  #nextByTime(): number {
    const hours = this.#config?.everyHours;
    if (hours === undefined) return Number.POSITIVE_INFINITY;
    return (this.#record.lastCheckAt || this.#record.since) + hours * HOUR_MS;
  }

  /**
   * The `everyHours` timer. When it fires on a DUT that is leased or not good it is not re-armed:
   * the end of that lease, or the DUT being set good again, finds the check due.
   */
  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const next = this.#nextByTime();
    if (this.#closed || next === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (Date.now() < next) this.#arm();
        else this.#kick();
      },
      Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS),
    );
  }

  /** Takes the DUT's lease (synchronously, before any waiting claim) and runs the check. */
  #startCheck(trigger: 'due' | 'requested'): Promise<HealthCheckOutcome> {
    const config = this.#config!;
    const leaseId = this.#takeLease(config.timeoutMs + LEASE_MARGIN_MS);
    const generation = this.#generation;
    this.#opts.log.info({ trigger, lease: leaseId }, `health check of ${this.#name} starting`);
    const running = this.#runCheck(config, leaseId, generation);
    this.#running = running;
    return running;
  }

  async #runCheck(
    config: HealthCheckConfig,
    leaseId: string,
    generation: number,
  ): Promise<HealthCheckOutcome> {
    let result: HealthCheckResult;
    try {
      result = await runHealthCheckJob({
        supervisor: this.#opts.supervisor,
        dut: this.#name,
        config,
        leaseId,
        owner: HEALTH_HOLDER,
      });
    } catch (err) {
      result = { jobId: '', passed: false, how: `could not be started: ${(err as Error).message}` };
    }
    // Shutting down: the check is left unfinished, its lease saved; a restart releases it and checks again.
    if (this.#closed) {
      this.#running = undefined;
      return { jobId: result.jobId, passed: result.passed, record: this.#record };
    }
    this.#apply(result, generation);
    this.#running = undefined;
    try {
      this.#opts.leases.release(leaseId, HEALTH_HOLDER);
    } catch (err) {
      // The lease ended under the check (an admin revoked it); its end served nobody while the
      // check ran, so the waiting claims are served now.
      this.#opts.log.warn({ err }, 'the health check lease had ended before the check');
      this.#opts.leases.retry(this.#name);
    }
    this.#arm();
    return { jobId: result.jobId, passed: result.passed, record: this.#record };
  }

  #apply(result: HealthCheckResult, generation: number): void {
    const now = Date.now();
    const record = this.#record;
    Object.assign(record, {
      lastCheckAt: now,
      lastCheckJobId: result.jobId,
      lastCheckPassed: result.passed,
      leasesSinceCheck: 0,
    });
    const job = result.jobId ? ` (job ${result.jobId})` : '';
    if (generation !== this.#generation) {
      this.#opts.log.warn(
        { job: result.jobId, passed: result.passed },
        `the health check ${result.how}, but an admin set ${this.#name} to ${record.state} meanwhile; that stands`,
      );
    } else if (!result.passed) {
      Object.assign(record, {
        state: 'bad',
        reason: `the health check ${result.how}${job}`,
        by: HEALTH_HOLDER,
        changedAt: now,
      });
    } else if (record.state !== 'good') {
      Object.assign(record, {
        state: 'good',
        reason: `the health check passed${job}`,
        by: HEALTH_HOLDER,
        changedAt: now,
      });
    }
    this.#opts.file.save(record);
    this.#announce();
    this.#opts.log.info(
      { job: result.jobId, passed: result.passed, state: record.state },
      `health check of ${this.#name} ${result.how}`,
    );
  }

  #announce(): void {
    const { state, reason, changedAt } = this.#record;
    this.#opts.events.publish({ kind: 'health', at: changedAt, dut: this.#name, state, reason });
  }

  /** Takes the DUT's lease for the check, ahead of waiting claims (see LeaseManager.seize). */
  #takeLease(ttlMs: number): string {
    try {
      return this.#opts.leases.seize(this.#name, HEALTH_HOLDER, ttlMs).id;
    } catch (err) {
      throw new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `the health check could not lease ${this.#name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}
