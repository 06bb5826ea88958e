/**
 * `jigctl report`: its flags, declared once here, and its registration. The handler is in
 * ../report-commands.ts, imported when the command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, connectionOptions, type FlagsOf } from './command-kit.js';

const reportBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('lease', { type: 'string', describe: 'the lease to report on (ended or held)' })
    .option('job', { type: 'string', describe: 'the job to report on' })
    .conflicts('lease', 'job')
    .option('output', {
      alias: 'o',
      type: 'string',
      describe: 'file to write (default run-ID.html; - = stdout)',
    })
    .option('serial', {
      type: 'boolean',
      default: true,
      describe: 'include the serial log (--no-serial)',
    })
    .option('verdict', {
      choices: ['pass', 'fail', 'infra-error', 'timeout', 'cancelled'] as const,
      describe: "the run's verdict, shown at the top (a CI script's own)",
    })
    .option('reason', { type: 'string', describe: 'with --verdict: why, in a sentence' });
/** `jigctl report` flags; `lease` here names the lease to report on. */
export type ReportFlags = FlagsOf<typeof reportBuilder>;

/** `jigctl report (--lease L | --job ID)`. */
export const addReport: AddCommand = (y, outcome) =>
  y.command(
    'report',
    'write the run record of a lease or job as one HTML file: timeline, serial log, events',
    reportBuilder,
    async (argv) => {
      const { reportCommand } = await import('../report-commands.js');
      outcome.exitCode = await reportCommand(argv);
    },
  );
