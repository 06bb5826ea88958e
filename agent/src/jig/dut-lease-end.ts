/**
 * What happens on a DUT when a lease on it ends: everything started under it stops — the jobs
 * bound to it (whoever started them), its holder's jobs on the DUT and its holder's power action
 * in the DUT's power driver — its console writer is detached, and the DUT is put in its safe
 * state. Viewers keep tailing.
 */
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { isFinal } from '../jobs/job-state.js';
import type { Supervisor } from '../jobs/supervisor.js';
import { LEASE_STOP_GRACE_MS } from '../leases/lease-jobs.js';
import type { Lease } from '../leases/lease-manager.js';
import type { ConsoleWriterSlot } from './dut-console-writer.js';
import type { PowerDriver } from './power-driver.js';

/** What ending a lease on one DUT works with. */
export interface LeaseEndContext {
  dut: DutDescription;
  supervisor: Supervisor;
  powerDriver: PowerDriver;
  writer: ConsoleWriterSlot;
  log: Logger;
  /** False once the DUT runtime is closing: no safe-state action is started then. */
  open: () => boolean;
  /** Switches the DUT to its safe state (through its power queue, as the agent). */
  safeState: (state: 'on' | 'off') => Promise<unknown>;
}

/** Ends `lease` on the DUT: see the file comment. `bound` are the ids of jobs bound to the lease. */
export async function endLeaseOnDut(
  c: LeaseEndContext,
  lease: Lease,
  reason: string,
  bound: readonly string[] = [],
): Promise<void> {
  const { supervisor, log, dut } = c;
  const { holder } = lease;
  const why = `the lease of ${holder} on ${dut.name} ended (${reason})`;
  c.writer.detach(
    new JigletError('JIGLET_E_FAILED_PRECONDITION', why),
    (w) => w.lease === lease.id || w.who.name === holder,
  );
  const boundIds = new Set(bound);
  const running = supervisor
    .list()
    .filter(
      (j) =>
        !isFinal(j.record.state) &&
        (boundIds.has(j.record.id) || (j.record.spec.dut === dut.name && j.record.owner === holder)),
    );
  await Promise.all([
    ...running.map((j) =>
      supervisor
        .stop(j.record.id, LEASE_STOP_GRACE_MS, 'lease')
        .catch((err) => log.warn({ err, job: j.record.id }, 'could not stop a leased job')),
    ),
    // A power action of the holder runs in the DUT's (agent-owned) power driver: stopped too.
    c.powerDriver
      .stopActionOf(holder, 'lease')
      .catch((err) => log.warn({ err }, 'could not stop a leased power action')),
  ]);
  const safe = dut.safeState.power;
  if (dut.power && safe !== 'unchanged' && c.open()) {
    try {
      await c.safeState(safe);
    } catch (err) {
      log.error({ err }, `could not put ${dut.name} in its safe state (power ${safe})`);
    }
  }
  log.info({ holder, reason, stopped: running.length }, why);
}
