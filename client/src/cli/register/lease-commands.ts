/**
 * jigctl's lease commands (claim, release, leases): their flags, declared once here, and their
 * registration. The handlers are in ../lease-commands.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, commandWords, connectionOptions, type FlagsOf, textOrJson } from './command-kit.js';

const claimBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('dut', { type: 'string' })
    .option('labels', { type: 'string', describe: 'k=v,k=v: any free DUT with all of them' })
    .option('ttl', {
      type: 'string',
      default: '10m',
      describe: 'lease time, renewed by heartbeats under --exec',
    })
    .option('wait', { type: 'string', describe: 'wait this long for a free DUT (5m)' })
    .option('priority', { type: 'number', default: 0 })
    .option('exec', {
      type: 'boolean',
      describe: 'run the command after -- with the lease, then release it',
    })
    .option('results', {
      type: 'string',
      describe:
        "with --exec: the command's $JIGLET_RESULTS folder, kept afterwards (default: a temporary one, removed)",
    })
    .option('output', textOrJson());
/** `jigctl claim` flags. */
export type ClaimFlags = FlagsOf<typeof claimBuilder>;

const releaseBuilder = (y: Argv) =>
  connectionOptions(y).positional('lease', { type: 'string', demandOption: true });
/** `jigctl release` flags. */
export type ReleaseFlags = FlagsOf<typeof releaseBuilder>;

const leasesBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('output', textOrJson())
    .option('watch', { alias: 'w', type: 'boolean', describe: 'keep printing lease events' })
    .option('dut', { type: 'string', describe: 'only this DUT (with --watch)' });
/** `jigctl leases` flags. */
export type LeasesFlags = FlagsOf<typeof leasesBuilder>;

/** `jigctl claim [--exec -- CMD]`. */
export const addClaim: AddCommand = (y, outcome) =>
  y.command(
    'claim',
    'lease a DUT (by --dut or --labels) and print the lease id; --exec -- CMD holds it while CMD runs',
    claimBuilder,
    async (argv) => {
      const { claimCommand } = await import('../lease-commands.js');
      outcome.exitCode = await claimCommand(argv, commandWords(argv));
    },
  );

/** `jigctl release LEASE`. */
export const addRelease: AddCommand = (y, outcome) =>
  y.command(
    'release <lease>',
    'end a lease: its jobs stop, its console detaches, the DUT is made safe',
    releaseBuilder,
    async (argv) => {
      const { releaseCommand } = await import('../lease-commands.js');
      outcome.exitCode = await releaseCommand(argv, argv.lease);
    },
  );

/** `jigctl leases [--watch]`. */
export const addLeases: AddCommand = (y, outcome) =>
  y.command(
    'leases',
    'list the leases held now (--watch: then every change, until Ctrl-C)',
    leasesBuilder,
    async (argv) => {
      const { leasesCommand } = await import('../lease-commands.js');
      outcome.exitCode = await leasesCommand(argv);
    },
  );
