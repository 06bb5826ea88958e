/**
 * jigctl's job commands (run, start, stop, status, logs, list): their flags, declared once here,
 * and their registration. The handlers are in ../job-commands.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, commandWords, connectionOptions, type FlagsOf, textOrJson } from './command-kit.js';

const startBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('dut', { type: 'string', describe: 'the DUT the job drives' })
    .option('timeout', { type: 'string', describe: 'stop the job after this long (30, 90s, 10m)' })
    .option('memory', { type: 'string', describe: 'memory limit (256M, 1G)' })
    .option('cpus', { type: 'string', describe: 'CPU limit in CPUs (0.5)' })
    .option('pids', { type: 'number', describe: 'process/thread limit' })
    .option('env', { type: 'string', array: true, describe: 'NAME=value for the job (repeatable)' })
    .option('cwd', { type: 'string', describe: 'working directory on the jig host' })
    .option('stdin', { alias: 'i', type: 'boolean', describe: 'forward our stdin to the job' });
/** Flags shared by `run` and `start`. */
export type StartFlags = FlagsOf<typeof startBuilder>;

const stopBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('id', { type: 'string', demandOption: true })
    .option('grace', { type: 'string', describe: 'time between SIGTERM and kill (default 5s)' });
/** `jigctl stop` flags. */
export type StopFlags = FlagsOf<typeof stopBuilder>;

const statusBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('id', { type: 'string', demandOption: true })
    .option('output', textOrJson());
/** `jigctl status` flags. */
export type StatusFlags = FlagsOf<typeof statusBuilder>;

const logsBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('id', { type: 'string', demandOption: true })
    .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing until the job ends' })
    .option('offset', { type: 'number', describe: 'start at this byte offset' });
/** `jigctl logs` flags. */
export type LogsFlags = FlagsOf<typeof logsBuilder>;

const listBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('output', textOrJson())
    .option('state', {
      type: 'string',
      array: true,
      choices: ['pending', 'running', 'exited', 'failed', 'stopped', 'lost'],
      describe: 'only jobs in this state (repeatable)',
    })
    .option('owner', { type: 'string', describe: 'only jobs of this identity' })
    .option('dut', { type: 'string', describe: 'only jobs that drive this DUT' })
    .option('limit', { type: 'number', describe: 'print at most this many (newest) jobs' });
/** `jigctl list` flags. */
export type ListFlags = FlagsOf<typeof listBuilder>;

/** `jigctl run -- CMD`. */
export const addRun: AddCommand = (y, outcome) =>
  y.command(
    'run',
    'run a command on the jig host, stream its output, exit with its code (jigctl run -- CMD ARGS)',
    startBuilder,
    async (argv) => {
      const { runCommand } = await import('../job-commands.js');
      outcome.exitCode = await runCommand(argv, commandWords(argv));
    },
  );

/** `jigctl start -- CMD`. */
export const addStart: AddCommand = (y, outcome) =>
  y.command(
    'start',
    'start a command and print its job id (jigctl start -- CMD ARGS)',
    startBuilder,
    async (argv) => {
      const { startCommand } = await import('../job-commands.js');
      outcome.exitCode = await startCommand(argv, commandWords(argv));
    },
  );

/** `jigctl stop ID`. */
export const addStop: AddCommand = (y, outcome) =>
  y.command(
    'stop <id>',
    'stop a job: SIGTERM, grace period, then kill its whole process tree',
    stopBuilder,
    async (argv) => {
      const { stopCommand } = await import('../job-commands.js');
      outcome.exitCode = await stopCommand(argv);
    },
  );

/** `jigctl status ID`. */
export const addStatus: AddCommand = (y, outcome) =>
  y.command('status <id>', 'show a job', statusBuilder, async (argv) => {
    const { statusCommand } = await import('../job-commands.js');
    outcome.exitCode = await statusCommand(argv);
  });

/** `jigctl logs ID`. */
export const addLogs: AddCommand = (y, outcome) =>
  y.command('logs <id>', "print a job's output", logsBuilder, async (argv) => {
    const { logsCommand } = await import('../job-commands.js');
    outcome.exitCode = await logsCommand(argv);
  });

/** `jigctl list`. */
export const addList: AddCommand = (y, outcome) =>
  y.command('list', 'list jobs, newest first', listBuilder, async (argv) => {
    const { listCommand } = await import('../job-commands.js');
    outcome.exitCode = await listCommand(argv);
  });
