/**
 * The jig at run time: its services first (a virtual DUT must exist before its console is
 * opened), then one DutRuntime per DUT with its serial capture, and each DUT's health, which
 * decides whether the DUT may be leased at all. Closed in reverse.
 */

import type { Logger } from 'pino';
import type { JigDescription } from '../../../jig-drivers/src/jig-description.js';
import { failedPrecondition, invalidArgument, notFound } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { ImageCache } from '../images/image-cache.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { Lease, LeaseChange, LeaseManager } from '../leases/lease-manager.js';
import { DutShells } from './dut-exec.js';
import { DutHealth, HEALTH_HOLDER } from './dut-health.js';
import { DutHealthFile } from './dut-health-file.js';
import { DutRuntime } from './dut-runtime.js';
import { DutSsh } from './dut-ssh.js';
import { DutStateFile } from './dut-state.js';
import type { JigDriverCommand } from './jig-driver-command.js';
import { type ServiceConfig, type Services, startServices } from './services.js';

/** Longest DUT name a request may carry (the jig description allows 63 characters). */
const MAX_DUT_NAME = 63;

/** All DUTs of the agent's jig; empty when the agent has no jig description. */
export class JigRuntime {
  readonly #duts = new Map<string, DutRuntime>();
  readonly #health = new Map<string, DutHealth>();
  readonly #ssh = new Map<string, DutSsh>();
  readonly #source: string;
  #services: Services | undefined;
  #unhook: () => void = () => undefined;

  /** Where the DUTs' power, flash, expect and health events go. */
  readonly events: AgentEvents;
  /** The shell sessions on the DUTs' serial consoles (exec, serial copies), one per DUT. */
  readonly shells = new DutShells();

  private constructor(source: string, events: AgentEvents) {
    this.#source = source;
    this.events = events;
  }

  /** Starts services, then serial captures, then health (the lease gate and due checks). */
  static async start(opts: {
    jig?: JigDescription;
    services: readonly ServiceConfig[];
    supervisor: Supervisor;
    jigDriver: JigDriverCommand;
    images: ImageCache;
    leases: LeaseManager;
    stateDir: string;
    log: Logger;
    events: AgentEvents;
    /** Most bytes a DUT's live serial log keeps (retention.serialLogMaxBytes). */
    serialLogMaxBytes: number;
  }): Promise<JigRuntime> {
    const runtime = new JigRuntime(opts.jig?.source ?? 'the agent config', opts.events);
    try {
      runtime.#services = await startServices(opts.services, opts.supervisor, opts.log);
      for (const dut of opts.jig?.duts ?? []) {
        const dutRuntime = new DutRuntime(dut, {
          ...opts,
          stateFile: new DutStateFile(opts.stateDir, dut.name, opts.log),
        });
        runtime.#duts.set(dut.name, dutRuntime);
        if (dut.ssh)
          runtime.#ssh.set(
            dut.name,
            DutSsh.forDut(dutRuntime, dut.ssh, opts.stateDir, opts.events, opts.log),
          );
        await dutRuntime.start();
        runtime.#health.set(
          dut.name,
          new DutHealth(dut.name, dut.healthCheck, {
            leases: opts.leases,
            supervisor: opts.supervisor,
            file: new DutHealthFile(opts.stateDir, dut.name, opts.log),
            source: runtime.#source,
            log: opts.log,
            events: opts.events,
          }),
        );
      }
    } catch (err) {
      await runtime.close();
      throw err;
    }
    opts.leases.setGate((dut) => runtime.#health.get(dut)?.gate());
    // Synchronous, before the lease manager serves waiting claims: a check that this end makes due
    // closes the gate in time (see dut-health.ts).
    const onEnded = (lease: Lease, reason: string, jobs: readonly string[]): void => {
      const settled = runtime.#duts.get(lease.dut)?.leaseEnded(lease, reason, jobs) ?? Promise.resolve();
      runtime.#health.get(lease.dut)?.leaseEnded(lease, settled);
    };
    // A leased DUT obeys only its holder: a console attached while it was free lets go.
    const onChange = (change: LeaseChange): void => {
      if (change.kind === 'granted') runtime.#duts.get(change.lease.dut)?.leaseGranted(change.lease);
    };
    opts.leases.on('ended', onEnded);
    opts.leases.on('change', onChange);
    runtime.#unhook = () => {
      opts.leases.off('ended', onEnded);
      opts.leases.off('change', onChange);
    };
    opts.leases.start();
    // A check the agent was running when it stopped has no job any more: its lease is given back
    // (the DUT made safe), and the check, still due, runs again.
    for (const lease of opts.leases.list()) {
      if (lease.holder === HEALTH_HOLDER) opts.leases.release(lease.id, HEALTH_HOLDER);
    }
    for (const health of runtime.#health.values()) health.start();
    return runtime;
  }

  /** The DUTs in description order, optionally only those carrying all `labels`. */
  list(labels: Record<string, string> = {}): DutRuntime[] {
    return [...this.#duts.values()].filter((d) =>
      Object.entries(labels).every(([key, value]) => d.dut.labels[key] === value),
    );
  }

  /** One DUT; NOT_FOUND names the DUTs there are. */
  get(name: string): DutRuntime {
    if (name === '') throw invalidArgument('a DUT name is required (--dut)');
    if (name.length > MAX_DUT_NAME)
      throw invalidArgument(`"${name.slice(0, 16)}…" is too long to be a DUT name`);
    const found = this.#duts.get(name);
    if (found) return found;
    const names = [...this.#duts.keys()];
    throw notFound(
      names.length === 0
        ? `no DUT "${name}": this agent has no jig description (start it with jiglet serve --config FILE)`
        : // Not the config file's path: every viewer reads this, and the host's layout is not theirs.
          `no DUT "${name}" on this jig (there are: ${names.join(', ')})`,
    );
  }

  /** The SSH connection of one DUT; FAILED_PRECONDITION when its description has no `ssh:` section. */
  ssh(name: string): DutSsh {
    this.get(name);
    const ssh = this.#ssh.get(name);
    if (!ssh)
      throw failedPrecondition(
        `${name} has no SSH server in the jig description (an ssh: section with host, user and keyFile): use its serial console instead (leave --via out)`,
      );
    return ssh;
  }

  /** The health of one DUT; NOT_FOUND as `get`. */
  health(name: string): DutHealth {
    this.get(name);
    return this.#health.get(name)!;
  }

  /** Ends restarts, followers and health timers; the supervisor's shutdown stops the jobs. */
  async close(): Promise<void> {
    this.#unhook();
    for (const health of this.#health.values()) health.close();
    await Promise.all([...this.#duts.values()].map((d) => d.close()));
    this.#services?.close();
  }
}
