/**
 * A DUT's `leaseDevices` belong to its lease holder's jobs while the lease lasts: the holder's job
 * uid gets rw on each node through a POSIX ACL entry (setfacl), removed when the lease ends. An ACL
 * rather than a group or chown leaves the node's own owner, group and mode (udev's) untouched.
 */
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { DutDescription } from '../../../jig-drivers/src/jig-description.js';
import type { JobUsers } from '../jobs/job-users.js';
import type { Lease, LeaseChange, LeaseManager } from './lease-manager.js';

/** setfacl on a device node is instant; one that hangs (a dead FUSE mount) must not pile up. */
const SETFACL_TIMEOUT_MS = 10_000;

/** Keeps the ACLs of every DUT's lease devices in step with its lease; `close()` stops listening. */
export class LeaseDeviceAccess {
  readonly #devices: ReadonlyMap<string, readonly string[]>;
  readonly #users: JobUsers;
  readonly #leases: LeaseManager;
  readonly #log: Logger;
  /** One chain per DUT, so a grant and the end that follows it reach the node in order. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #onChange = (change: LeaseChange): void => {
    if (change.kind === 'granted') this.#apply(change.lease, 'grant');
    else if (change.kind === 'ended') this.#apply(change.lease, 'revoke');
  };

  constructor(opts: { duts: readonly DutDescription[]; users: JobUsers; leases: LeaseManager; log: Logger }) {
    this.#devices = new Map(
      opts.duts.flatMap((d) => (d.leaseDevices ? [[d.name, d.leaseDevices] as const] : [])),
    );
    this.#users = opts.users;
    this.#leases = opts.leases;
    this.#log = opts.log;
  }

  /** Takes back what an earlier run left granted, grants the leases that are live, then follows changes. */
  start(): void {
    for (const [dut, paths] of this.#devices) {
      const holder = this.#leases.list().find((l) => l.dut === dut);
      const keep = holder ? this.#users.credentialsOf(holder.holder)?.uid : undefined;
      for (const uid of this.#users.allocatedUids()) {
        if (uid !== keep) this.#queue(dut, paths, ['-x', `u:${uid}`]);
      }
      if (holder) this.#apply(holder, 'grant');
    }
    this.#leases.on('change', this.#onChange);
  }

  /** Resolves once the ACL changes asked so far for `dut` are on its nodes. */
  settled(dut: string): Promise<void> {
    return this.#chains.get(dut) ?? Promise.resolve();
  }

  /** Stops following leases; resolves once every pending ACL change is done. */
  async close(): Promise<void> {
    this.#leases.off('change', this.#onChange);
    await Promise.all(this.#chains.values());
  }

  #apply(lease: Lease, what: 'grant' | 'revoke'): void {
    const paths = this.#devices.get(lease.dut);
    if (!paths) return;
    let uid: number | undefined;
    try {
      uid = this.#users.credentialsOf(lease.holder)?.uid;
    } catch (err) {
      this.#log.error({ err, dut: lease.dut, holder: lease.holder }, 'no job uid for the lease holder');
      return;
    }
    // Without a uid of its own the holder's jobs run as the agent, which needs no grant.
    if (uid === undefined) return;
    this.#queue(lease.dut, paths, what === 'grant' ? ['-m', `u:${uid}:rw`] : ['-x', `u:${uid}`]);
  }

  #queue(dut: string, paths: readonly string[], args: string[]): void {
    const previous = this.#chains.get(dut) ?? Promise.resolve();
    const next = previous.then(() => this.#setfacl(dut, paths, args));
    this.#chains.set(dut, next);
  }

  /** Never rejects: a node that is gone (unplugged adapter) is logged, and the lease goes on. */
  #setfacl(dut: string, paths: readonly string[], args: string[]): Promise<void> {
    return new Promise((resolve) => {
      execFile('setfacl', [...args, '--', ...paths], { timeout: SETFACL_TIMEOUT_MS }, (err, _out, stderr) => {
        if (err)
          this.#log.warn(
            { dut, args, err: stderr.trim() || err.message },
            'could not change the ACL of a lease device',
          );
        else this.#log.debug({ dut, args }, 'lease device ACL changed');
        resolve();
      });
    });
  }
}
