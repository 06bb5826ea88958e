/**
 * jigctl's lease commands: `claim` (optionally holding the lease while a command runs, with
 * heartbeats, and releasing it afterwards whatever happens), `release` and `leases`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { delimiter, resolve } from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { type ConnectionFlags, type ConnectionSettings, resolveConnection } from '../connection.js';
import type { Lease } from '../lease-client.js';
import { humanSpan } from './dut-table.js';
import { clockTime, renderTable } from './format.js';
import { jigctlDir } from './jigctl-on-path.js';
import { connect } from './job-commands.js';
import { parseDuration, parsePairs } from './parse-units.js';
import type { ClaimFlags, LeasesFlags } from './register/lease-commands.js';
import { localResults } from './results-summary.js';

/** Shown for a lease id the agent keeps from us: only its holder and admins see it. */
const HIDDEN = '(hidden)';

function leaseJson(l: Lease): Record<string, unknown> {
  return {
    id: l.id,
    dut: l.dut,
    holder: l.holder,
    fencingToken: Number(l.fencingToken),
    expires: l.expires?.toISOString(),
    maxExpires: l.maxExpires?.toISOString(),
    ttlMs: l.ttlMs,
  };
}

/** `jigctl claim`: prints the lease id, or with --exec runs the command holding the lease. */
export async function claimCommand(flags: ClaimFlags, command: readonly string[]): Promise<number> {
  if (flags.exec && command.length === 0) throw invalidArgument('--exec needs a command after --');
  if (flags.results !== undefined && !flags.exec) throw invalidArgument('--results needs --exec');
  if (!flags.exec && command.length > 0)
    throw invalidArgument(`unexpected arguments ${command.join(' ')}; did you mean --exec?`);
  const labels = flags.labels ? parsePairs('--labels', flags.labels.split(','), 'key=value') : undefined;
  const claim = {
    dut: flags.dut,
    labels,
    ttlMs: parseDuration('--ttl', flags.ttl ?? '10m'),
    waitMs: flags.wait ? parseDuration('--wait', flags.wait) : 0,
    priority: flags.priority ?? 0,
  };
  const client = connect(flags);
  try {
    if (!flags.exec) {
      const lease = await client.leases.claim(claim);
      process.stdout.write(
        flags.output === 'json' ? `${JSON.stringify(leaseJson(lease), null, 2)}\n` : `${lease.id}\n`,
      );
      return 0;
    }
    return await client.withLease(claim, async (lease) => {
      process.stderr.write(`jigctl: holding ${lease.dut} (lease ${lease.id}, token ${lease.fencingToken})\n`);
      const [program, ...args] = command;
      const results = localResults(flags.results);
      const bin = jigctlDir();
      const child = spawn(program!, args, {
        stdio: 'inherit',
        env: { ...commandEnv(resolveConnection(flags), lease, bin?.dir), JIGLET_RESULTS: results.dir },
      });
      child.once('exit', () => bin?.dispose());
      child.once('error', () => bin?.dispose());
      const forward = (signal: NodeJS.Signals) => (): void => {
        child.kill(signal);
      };
      const onInt = forward('SIGINT');
      const onTerm = forward('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      try {
        const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
        return code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGINT' ? 2 : 15);
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        // The summary never changes the exit code: that stays the command's.
        process.stderr.write(results.finish());
      }
    });
  } finally {
    client.close();
  }
}

/**
 * The environment of a `claim --exec` command: jigctl on PATH and the connection it was given,
 * flags included, so `jigctl power on` inside acts on the leased DUT as this user.
 */
function commandEnv(settings: ConnectionSettings, lease: Lease, bin: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JIGLET_ADDR: settings.server,
    JIGLET_LEASE: lease.id,
    JIGLET_DUT: lease.dut,
  };
  if (bin !== undefined) env.PATH = env.PATH ? `${bin}${delimiter}${env.PATH}` : bin;
  // Absolute, so a command that changes its directory still finds them; '' on a local endpoint.
  for (const [name, path] of [
    ['JIGLET_CA', settings.ca],
    ['JIGLET_CERT', settings.cert],
    ['JIGLET_KEY', settings.key],
  ] as const) {
    if (path !== '') env[name] = resolve(path);
  }
  return env;
}

/** `jigctl release LEASE`. */
export async function releaseCommand(flags: ConnectionFlags, leaseId: string): Promise<number> {
  const client = connect(flags);
  try {
    await client.leases.release(leaseId);
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl leases --watch`: one line (or JSON object) per lease event until interrupted. */
async function watchLeases(
  client: ReturnType<typeof connect>,
  flags: { output?: string; dut?: string },
): Promise<number> {
  const stop = new AbortController();
  const onInt = (): void => stop.abort();
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onInt);
  try {
    for await (const event of client.leases.watch({ dut: flags.dut, signal: stop.signal })) {
      if (flags.output === 'json') {
        process.stdout.write(
          `${JSON.stringify({ ...event, at: event.at.toISOString(), lease: event.lease && leaseJson(event.lease) })}\n`,
        );
        continue;
      }
      const what =
        event.kind === 'waiting'
          ? `${event.waiting} waiting`
          : `${event.lease?.holder} lease ${event.lease?.id || HIDDEN} token ${event.lease?.fencingToken}`;
      process.stdout.write(`${event.at.toISOString()} ${event.kind.padEnd(8)} ${event.dut} ${what}\n`);
    }
    return 0;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onInt);
  }
}

/** `jigctl leases [--watch]`. */
export async function leasesCommand(flags: LeasesFlags): Promise<number> {
  const client = connect(flags);
  try {
    if (flags.watch) return await watchLeases(client, flags);
    const leases = await client.leases.list();
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify(leases.map(leaseJson), null, 2)}\n`);
      return 0;
    }
    const rows = leases.map((l) => [
      l.dut,
      l.holder,
      l.id || HIDDEN,
      String(l.fencingToken),
      l.expires
        ? `${clockTime(l.expires).slice(0, 8)} (in ${humanSpan(l.expires.getTime() - Date.now())})`
        : '-',
    ]);
    process.stdout.write(
      rows.length === 0
        ? 'no leases held\n'
        : `${renderTable(['DUT', 'HOLDER', 'LEASE', 'TOKEN', 'EXPIRES'], rows)}\n`,
    );
    return 0;
  } finally {
    client.close();
  }
}
