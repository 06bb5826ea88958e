/**
 * `jigctl queue …` (submit, list, status, cancel, logs, report, results, stats): their flags,
 * declared once here, and their registration. They talk to the queue's database, not to an agent.
 * The handlers are in ../queue-commands.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import { invalidArgument } from '../../../../protocol/src/errors.js';
import { type AddCommand, commandWords, type FlagsOf } from './command-kit.js';

/**
 * Options of every queue command. `queue report -o FILE` names a file, while the other queue
 * commands print text or json: a check, because yargs adds a subcommand's choices to its
 * parent's instead of replacing them.
 */
const queueBuilder = (y: Argv) =>
  y
    .option('db', {
      type: 'string',
      describe: 'queue database: postgres://… or pglite:DIR (env JIGLET_QUEUE_DB)',
      group: 'Queue:',
    })
    .option('output', {
      alias: 'o',
      type: 'string',
      describe: 'text or json (queue report: the file; queue results: table, json or junit)',
    })
    .check((argv) => {
      if (argv._[1] === 'report' || argv.output === undefined || ['text', 'json'].includes(argv.output))
        return true;
      if (argv._[1] === 'results' && ['table', 'junit'].includes(argv.output)) return true;
      throw invalidArgument(`-o is text or json, not "${argv.output}"`);
    });
/** What a queue subcommand's builder starts from: the options of every queue command. */
type QueueArgv = ReturnType<typeof queueBuilder>;
/** Flags every queue command takes. */
export type QueueFlags = FlagsOf<typeof queueBuilder>;

const submitBuilder = (y: QueueArgv) =>
  y
    .option('labels', { type: 'string', describe: 'every label a DUT must have (k=v,…)' })
    .option('image', {
      type: 'string',
      describe: 'flash this image first (a path the jig hosts can read)',
    })
    .option('priority', { type: 'number', describe: 'higher runs first (-1000…1000, default 0)' })
    .option('timeout', { type: 'string', describe: 'the whole job, e.g. 30m (default 1h)' })
    .option('max-attempts', {
      type: 'number',
      describe: 'attempts it gets: an infra-error is retried on another DUT (default 3)',
    })
    .option('env', {
      type: 'string',
      array: true,
      describe: 'NAME=value for the command (repeatable; values shown only to you)',
    })
    .option('id-file', {
      type: 'string',
      describe: 'write the job id to this file once it is queued (with --wait, for later steps)',
    })
    .option('wait', {
      type: 'boolean',
      describe: 'follow its output and exit with its code (infra-error 75, timeout 124, cancelled 130)',
    });
/** `jigctl queue submit` flags. */
export type SubmitFlags = FlagsOf<typeof submitBuilder>;

const listBuilder = (y: QueueArgv) =>
  y
    .option('state', { type: 'string', array: true, describe: 'only these states' })
    .option('limit', { type: 'number', default: 50 });
/** `jigctl queue list` flags. */
export type QueueListFlags = FlagsOf<typeof listBuilder>;

const jobBuilder = (y: QueueArgv) => y.positional('id', { type: 'string', demandOption: true });
/** `jigctl queue status|cancel` flags: one job. */
export type QueueJobFlags = FlagsOf<typeof jobBuilder>;

const logsBuilder = (y: QueueArgv) => jobBuilder(y).option('follow', { alias: 'f', type: 'boolean' });
/** `jigctl queue logs` flags. */
export type QueueLogsFlags = FlagsOf<typeof logsBuilder>;

const attemptBuilder = (y: QueueArgv) =>
  jobBuilder(y).option('attempt', { type: 'number', describe: 'this attempt (default the latest)' });
/** `jigctl queue report|results` flags: one attempt of a job. */
export type QueueAttemptFlags = FlagsOf<typeof attemptBuilder>;

/** `jigctl queue …`. */
export const addQueue: AddCommand = (y, outcome) =>
  y.command('queue', 'the fleet queue: submit jig jobs, watch them (--db URL or JIGLET_QUEUE_DB)', (q) =>
    queueBuilder(q)
      .command(
        'submit',
        'queue a jig job; prints its id (jigctl queue submit --labels k=v -- CMD ARGS)',
        submitBuilder,
        async (argv) => {
          const { queueSubmitCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueSubmitCommand(argv, commandWords(argv).slice(1));
        },
      )
      .command('list', 'list jobs, newest first', listBuilder, async (argv) => {
        const { queueListCommand } = await import('../queue-commands.js');
        outcome.exitCode = await queueListCommand(argv);
      })
      .command(
        'status <id>',
        'a job, where it ran, where its logs are, and each attempt',
        jobBuilder,
        async (argv) => {
          const { queueStatusCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueStatusCommand(argv);
        },
      )
      .command(
        'cancel <id>',
        'cancel a job (a running one is stopped by its worker)',
        jobBuilder,
        async (argv) => {
          const { queueCancelCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueCancelCommand(argv);
        },
      )
      .command(
        'logs <id>',
        "a job's output (-f: follow to the end and exit with the job's code)",
        logsBuilder,
        async (argv) => {
          const { queueLogsCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueLogsCommand(argv);
        },
      )
      .command(
        'report <id>',
        "a job's run report (HTML: timeline, serial log), stored by its worker after each attempt",
        attemptBuilder,
        async (argv) => {
          const { queueReportCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueReportCommand(argv);
        },
      )
      .command(
        'results <id>',
        'the test cases a job reported (-o table, json or junit), of its latest attempt unless --attempt',
        attemptBuilder,
        async (argv) => {
          const { queueResultsCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueResultsCommand(argv);
        },
      )
      .command(
        'stats',
        'queue depth per label set, and matching DUTs idle, busy, quarantined, offline',
        (c) => c,
        async (argv) => {
          const { queueStatsCommand } = await import('../queue-commands.js');
          outcome.exitCode = await queueStatsCommand(argv);
        },
      )
      .demandCommand(1, 'name a queue command: submit, list, status, cancel, logs, results, report, stats'),
  );
