#!/usr/bin/env node
/**
 * `jigctl`: the command line for CI pipelines and engineers. Failures print one line on stderr
 * and exit 2 (usage), 69 (agent unreachable), 77 (permission/identity) or 1; `run` exits with
 * the job's own code, and `queue submit --wait` / `queue logs -f` with the queued job's (75
 * infra-error, 124 timeout, 130 cancelled).
 */
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { invalidArgument } from '../../protocol/src/errors.js';
import { describeFailure, EXIT } from './cli/exit-codes.js';
import { resolveConnection } from './connection.js';

/** Re-tries the TLS handshake by hand to explain an UNAVAILABLE (see diagnose-connection.ts). */
async function diagnose() {
  const argv = (await yargs(hideBin(process.argv)).help(false).version(false).parse()) as Record<
    string,
    string | undefined
  >;
  const { diagnoseConnection } = await import('./diagnose-connection.js');
  return diagnoseConnection(resolveConnection(argv));
}

/** Options every command that talks to an agent accepts. */
function connectionOptions<T>(y: Argv<T>) {
  return y
    .option('server', {
      alias: 'addr',
      type: 'string',
      describe: 'agent HOST:PORT, or unix:PATH of its local endpoint inside a job (env JIGLET_ADDR)',
      group: 'Connection:',
    })
    .option('ca', { type: 'string', describe: 'CA certificate (env JIGLET_CA)', group: 'Connection:' })
    .option('cert', {
      type: 'string',
      describe: 'client certificate (env JIGLET_CERT)',
      group: 'Connection:',
    })
    .option('key', { type: 'string', describe: 'client key (env JIGLET_KEY)', group: 'Connection:' })
    .option('context', {
      type: 'string',
      describe: 'named context from the config file',
      group: 'Connection:',
    })
    .option('lease', {
      type: 'string',
      describe: 'lease id to carry on mutating calls (env JIGLET_LEASE)',
      group: 'Connection:',
    });
}

/**
 * `--dut`, required unless JIGLET_DUT names one: inside a job (or `claim --exec`) that is the DUT
 * it holds, so `jigctl power on` acts on it.
 */
function dutOption() {
  const held = process.env.JIGLET_DUT || undefined;
  // A default satisfies yargs' demand, so the flag is required only when JIGLET_DUT is unset.
  return held === undefined
    ? ({ type: 'string', demandOption: true, describe: 'the DUT' } as const)
    : ({
        type: 'string',
        demandOption: true,
        default: held,
        describe: 'the DUT (default: JIGLET_DUT)',
      } as const);
}

function startOptions<T>(y: Argv<T>) {
  return connectionOptions(y)
    .option('dut', { type: 'string', describe: 'the DUT the job drives' })
    .option('timeout', { type: 'string', describe: 'stop the job after this long (30, 90s, 10m)' })
    .option('memory', { type: 'string', describe: 'memory limit (256M, 1G)' })
    .option('cpus', { type: 'string', describe: 'CPU limit in CPUs (0.5)' })
    .option('pids', { type: 'number', describe: 'process/thread limit' })
    .option('env', { type: 'string', array: true, describe: 'NAME=value for the job (repeatable)' })
    .option('cwd', { type: 'string', describe: 'working directory on the jig host' })
    .option('stdin', { alias: 'i', type: 'boolean', describe: 'forward our stdin to the job' });
}

/**
 * Options of the queue commands, which talk to the queue's database, not to an agent.
 * `queue report -o FILE` names a file, while the other queue commands print text or json: a check,
 * because yargs adds a subcommand's choices to its parent's instead of replacing them.
 */
function queueOptions<T>(y: Argv<T>) {
  return y
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
}

/** The words after `--` (or the positional words), as the command to run. */
function commandWords(argv: { _: (string | number)[]; '--'?: (string | number)[] }): string[] {
  return [...argv._.slice(1), ...(argv['--'] ?? [])].map(String);
}

// grpc-js sets the TLS ServerName even to an IP address (channel-credentials.js), and Node
// then prints DEP0123 on every connection to 127.0.0.1: noise a CLI user cannot act on.
process.noDeprecation = true;

let exitCode = 0;
try {
  await yargs(hideBin(process.argv))
    .scriptName('jigctl')
    .parserConfiguration({ 'populate--': true })
    .strict()
    .command(
      'run',
      'run a command on the jig host, stream its output, exit with its code (jigctl run -- CMD ARGS)',
      (y) => startOptions(y),
      async (argv) => {
        const { runCommand } = await import('./cli/job-commands.js');
        exitCode = await runCommand(argv, commandWords(argv));
      },
    )
    .command(
      'start',
      'start a command and print its job id (jigctl start -- CMD ARGS)',
      (y) => startOptions(y),
      async (argv) => {
        const { startCommand } = await import('./cli/job-commands.js');
        exitCode = await startCommand(argv, commandWords(argv));
      },
    )
    .command(
      'stop <id>',
      'stop a job: SIGTERM, grace period, then kill its whole process tree',
      (y) =>
        connectionOptions(y)
          .positional('id', { type: 'string', demandOption: true })
          .option('grace', { type: 'string', describe: 'time between SIGTERM and kill (default 5s)' }),
      async (argv) => {
        const { stopCommand } = await import('./cli/job-commands.js');
        exitCode = await stopCommand(argv);
      },
    )
    .command(
      'status <id>',
      'show a job',
      (y) =>
        connectionOptions(y)
          .positional('id', { type: 'string', demandOption: true })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { statusCommand } = await import('./cli/job-commands.js');
        exitCode = await statusCommand(argv);
      },
    )
    .command(
      'logs <id>',
      "print a job's output",
      (y) =>
        connectionOptions(y)
          .positional('id', { type: 'string', demandOption: true })
          .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing until the job ends' })
          .option('offset', { type: 'number', describe: 'start at this byte offset' }),
      async (argv) => {
        const { logsCommand } = await import('./cli/job-commands.js');
        exitCode = await logsCommand(argv);
      },
    )
    .command(
      'list',
      'list jobs, newest first',
      (y) =>
        connectionOptions(y)
          .option('output', {
            alias: 'o',
            choices: ['text', 'json'] as const,
            default: 'text' as const,
          })
          .option('state', {
            type: 'string',
            array: true,
            choices: ['pending', 'running', 'exited', 'failed', 'stopped', 'lost'],
            describe: 'only jobs in this state (repeatable)',
          })
          .option('owner', { type: 'string', describe: 'only jobs of this identity' })
          .option('dut', { type: 'string', describe: 'only jobs that drive this DUT' })
          .option('limit', { type: 'number', describe: 'print at most this many (newest) jobs' }),
      async (argv) => {
        const { listCommand } = await import('./cli/job-commands.js');
        exitCode = await listCommand(argv);
      },
    )
    .command(
      'jig',
      'list the DUTs with their health, labels, power and serial state',
      (y) =>
        connectionOptions(y)
          .option('output', {
            alias: 'o',
            choices: ['table', 'wide', 'json'] as const,
            default: 'table' as const,
            describe: 'table fits 120 columns; wide adds driver, port, capture job and last event',
          })
          .option('label', { type: 'string', array: true, describe: 'only DUTs with this key=value label' }),
      async (argv) => {
        const { jigListCommand } = await import('./cli/jig-commands.js');
        exitCode = await jigListCommand(argv);
      },
    )
    .command(
      'power <action>',
      "switch or read a DUT's power (status prints on, off or unknown)",
      (y) =>
        connectionOptions(y)
          .positional('action', { choices: ['on', 'off', 'cycle', 'status'] as const, demandOption: true })
          .option('dut', dutOption())
          .option('off-time', { type: 'string', describe: 'for cycle: time to stay off (3s)' })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { powerCommand } = await import('./cli/jig-commands.js');
        exitCode = await powerCommand(argv);
      },
    )
    .command('dut', "a DUT's health (admin) and state: out of service, back, check it, goto a state", (y) =>
      y
        .command(
          'state <dut> <state>',
          'set a DUT good (back in service), bad or maintenance (no new claims; a lease held now goes on)',
          (c) =>
            connectionOptions(c)
              .positional('dut', { type: 'string', demandOption: true })
              .positional('state', { choices: ['good', 'bad', 'maintenance'] as const, demandOption: true })
              .option('reason', { type: 'string', describe: 'why, for whoever finds it out of service' })
              .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
          async (argv) => {
            const { dutStateCommand } = await import('./cli/dut-commands.js');
            exitCode = await dutStateCommand(argv);
          },
        )
        .command(
          'check <dut>',
          "run the DUT's health check now and wait for it (exit 0 passed, 1 failed); its result sets the health",
          (c) =>
            connectionOptions(c)
              .positional('dut', { type: 'string', demandOption: true })
              .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
          async (argv) => {
            const { dutCheckCommand } = await import('./cli/dut-commands.js');
            exitCode = await dutCheckCommand(argv);
          },
        )
        .command(
          'goto <dut> <state>',
          'bring a DUT to off, booted or shell (logged in), doing only what is missing; --image: running that image',
          (c) =>
            connectionOptions(c)
              .positional('dut', { type: 'string', demandOption: true })
              .positional('state', { choices: ['off', 'booted', 'shell'] as const, demandOption: true })
              .option('image', {
                type: 'string',
                describe: 'an image file the DUT must run (flashed unless it has it)',
              })
              .option('timeout', { type: 'string', describe: 'give up after this long (default 5m)' })
              .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
          async (argv) => {
            const { gotoCommand } = await import('./cli/exec-commands.js');
            exitCode = await gotoCommand(argv);
          },
        )
        .command(
          'forget-host-key <dut>',
          'forget the SSH host key jiglet learnt for a DUT reinstalled outside jiglet (admin); the next connection learns the new one',
          (c) => connectionOptions(c).positional('dut', { type: 'string', demandOption: true }),
          async (argv) => {
            const { forgetHostKeyCommand } = await import('./cli/dut-commands.js');
            exitCode = await forgetHostKeyCommand(argv);
          },
        )
        .demandCommand(1, 'name a dut command: state, check, goto or forget-host-key'),
    )
    .command('serial', "read a DUT's serial log", (y) =>
      y
        .command(
          'tail',
          'print the serial log: bytes on stdout, capture events on stderr (-o json: one record a line)',
          (c) =>
            connectionOptions(c)
              .option('dut', dutOption())
              .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing until Ctrl-C' })
              .option('offset', { type: 'number', describe: 'start at this serial-log offset' })
              .option('since', { type: 'string', describe: 'start this long ago (10m) or at an ISO time' })
              .option('from-end', { type: 'boolean', describe: 'only what arrives from now on' })
              .conflicts('offset', ['since', 'from-end'])
              .conflicts('since', 'from-end')
              .option('output', { alias: 'o', choices: ['raw', 'json'] as const, default: 'raw' as const }),
          async (argv) => {
            const { serialTailCommand } = await import('./cli/jig-commands.js');
            exitCode = await serialTailCommand(argv);
          },
        )
        .demandCommand(1, 'name a serial command: tail'),
    )
    .command(
      'claim',
      'lease a DUT (by --dut or --labels) and print the lease id; --exec -- CMD holds it while CMD runs',
      (y) =>
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
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { claimCommand } = await import('./cli/lease-commands.js');
        exitCode = await claimCommand(argv, commandWords(argv));
      },
    )
    .command(
      'report',
      'write the run record of a lease or job as one HTML file: timeline, serial log, events',
      (y) =>
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
          .option('reason', { type: 'string', describe: 'with --verdict: why, in a sentence' }),
      async (argv) => {
        const { reportCommand } = await import('./cli/report-commands.js');
        exitCode = await reportCommand(argv);
      },
    )
    .command(
      'release <lease>',
      'end a lease: its jobs stop, its console detaches, the DUT is made safe',
      (y) => connectionOptions(y).positional('lease', { type: 'string', demandOption: true }),
      async (argv) => {
        const { releaseCommand } = await import('./cli/lease-commands.js');
        exitCode = await releaseCommand(argv, argv.lease);
      },
    )
    .command('queue', 'the fleet queue: submit jig jobs, watch them (--db URL or JIGLET_QUEUE_DB)', (y) =>
      queueOptions(y)
        .command(
          'submit',
          'queue a jig job; prints its id (jigctl queue submit --labels k=v -- CMD ARGS)',
          (c) =>
            c
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
                describe:
                  'follow its output and exit with its code (infra-error 75, timeout 124, cancelled 130)',
              }),
          async (argv) => {
            const { queueSubmitCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueSubmitCommand(argv, commandWords(argv).slice(1));
          },
        )
        .command(
          'list',
          'list jobs, newest first',
          (c) =>
            c
              .option('state', { type: 'string', array: true, describe: 'only these states' })
              .option('limit', { type: 'number', default: 50 }),
          async (argv) => {
            const { queueListCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueListCommand(argv);
          },
        )
        .command(
          'status <id>',
          'a job, where it ran, where its logs are, and each attempt',
          (c) => c.positional('id', { type: 'string', demandOption: true }),
          async (argv) => {
            const { queueStatusCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueStatusCommand(argv);
          },
        )
        .command(
          'cancel <id>',
          'cancel a job (a running one is stopped by its worker)',
          (c) => c.positional('id', { type: 'string', demandOption: true }),
          async (argv) => {
            const { queueCancelCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueCancelCommand(argv);
          },
        )
        .command(
          'logs <id>',
          "a job's output (-f: follow to the end and exit with the job's code)",
          (c) =>
            c
              .positional('id', { type: 'string', demandOption: true })
              .option('follow', { alias: 'f', type: 'boolean' }),
          async (argv) => {
            const { queueLogsCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueLogsCommand(argv);
          },
        )
        .command(
          'report <id>',
          "a job's run report (HTML: timeline, serial log), stored by its worker after each attempt",
          (c) =>
            c
              .positional('id', { type: 'string', demandOption: true })
              .option('attempt', { type: 'number', describe: 'this attempt (default the latest)' }),
          async (argv) => {
            const { queueReportCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueReportCommand(argv);
          },
        )
        .command(
          'results <id>',
          'the test cases a job reported (-o table, json or junit), of its latest attempt unless --attempt',
          (c) =>
            c
              .positional('id', { type: 'string', demandOption: true })
              .option('attempt', { type: 'number', describe: 'this attempt (default the latest)' }),
          async (argv) => {
            const { queueResultsCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueResultsCommand(argv);
          },
        )
        .command(
          'stats',
          'queue depth per label set, and matching DUTs idle, busy, quarantined, offline',
          (c) => c,
          async (argv) => {
            const { queueStatsCommand } = await import('./cli/queue-commands.js');
            exitCode = await queueStatsCommand(argv);
          },
        )
        .demandCommand(1, 'name a queue command: submit, list, status, cancel, logs, results, report, stats'),
    )
    .command(
      'leases',
      'list the leases held now (--watch: then every change, until Ctrl-C)',
      (y) =>
        connectionOptions(y)
          .option('output', {
            alias: 'o',
            choices: ['text', 'json'] as const,
            default: 'text' as const,
          })
          .option('watch', { alias: 'w', type: 'boolean', describe: 'keep printing lease events' })
          .option('dut', { type: 'string', describe: 'only this DUT (with --watch)' }),
      async (argv) => {
        const { leasesCommand } = await import('./cli/lease-commands.js');
        exitCode = await leasesCommand(argv);
      },
    )
    .command(
      'images',
      "list the agent's cached images (images rm SHA256… removes them)",
      (y) =>
        connectionOptions(y)
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const })
          .command(
            'rm <sha256..>',
            'remove cached images (admin; refused while a flash reads one)',
            (c) =>
              connectionOptions(c).positional('sha256', { type: 'string', array: true, demandOption: true }),
            async (argv) => {
              const { imagesRemoveCommand } = await import('./cli/image-commands.js');
              exitCode = await imagesRemoveCommand({ ...argv, sha256: argv.sha256.map(String) });
            },
          ),
      async (argv) => {
        const { imagesCommand } = await import('./cli/image-commands.js');
        exitCode = await imagesCommand(argv);
      },
    )
    .command(
      'flash <image>',
      "write an image to a DUT's boot medium: upload if the agent lacks it, flash, verify, with progress",
      (y) =>
        connectionOptions(y)
          .positional('image', {
            type: 'string',
            demandOption: true,
            describe: 'raw, .gz, .xz or .zst image',
          })
          .option('dut', dutOption())
          .option('bmap', { type: 'string', describe: 'a bmaptool .bmap file for the image' })
          .option('verify', {
            type: 'boolean',
            default: true,
            describe: 'read back and check (--no-verify skips, loudly)',
          })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { flashCommand } = await import('./cli/image-commands.js');
        exitCode = await flashCommand(argv);
      },
    )
    .command(
      'console',
      "attach to a DUT's console; Ctrl-] detaches (piped stdin: shows the DUT's answer, then detaches)",
      (y) =>
        connectionOptions(y)
          .option('dut', dutOption())
          .option('take-over', { type: 'boolean', describe: 'take the console from its writer (admin)' })
          .option('web', {
            type: 'boolean',
            describe: "print a single-use link to the agent's browser console instead",
          })
          .option('open', { type: 'boolean', describe: 'with --web: open the link with xdg-open' })
          .option('until', {
            type: 'string',
            describe:
              'piped stdin: after it ends, wait for a line matching this RE2 pattern (exit 1 if none)',
          })
          .option('drain', {
            type: 'string',
            describe: 'piped stdin: after it ends, show output until the DUT is quiet this long (default 1s)',
          })
          .option('timeout', {
            type: 'string',
            describe: 'piped stdin: how long to wait for --until, or at most for quiet (default 30s)',
          })
          .conflicts('web', 'take-over')
          .epilogue(
            'On a terminal, keys go to the DUT as typed (Ctrl-C included) and Ctrl-] detaches. ' +
              "Otherwise stdin's bytes are sent as they are; after its end jigctl shows the DUT's output " +
              'until it has been quiet for --drain, or until a line matches --until (exit 0; exit 1 if ' +
              "none within --timeout): printf 'root\\n' | jigctl console --dut D --until 'root@'. " +
              'DUT output goes to stdout, capture events to stderr. ' +
              'With --web the browser console is read-only unless you hold the lease of the DUT and may write.',
          ),
      async (argv) => {
        const { consoleCommand } = await import('./cli/console-command.js');
        exitCode = await consoleCommand(argv);
      },
    )
    .command(
      'exec',
      "run a command on a DUT's shell over its serial console; exit with its exit code (124 on timeout)",
      (y) =>
        connectionOptions(y)
          .usage('jigctl exec --dut D [--timeout 30s] [-i] -- CMD [ARGS…]')
          .option('dut', dutOption())
          .option('timeout', {
            type: 'string',
            describe: 'interrupt it (Ctrl-C) after this long (default 30s)',
          })
          .option('interactive', {
            alias: 'i',
            type: 'boolean',
            describe:
              "its stdin is the console: jigctl's stdin is typed to it, then Ctrl-D (default /dev/null)",
          })
          .option('keep-kernel-lines', {
            type: 'boolean',
            describe: 'leave kernel console lines in the output (default: to stderr)',
          })
          .option('via', {
            choices: ['serial', 'ssh'] as const,
            describe:
              "how to reach the shell: the serial console (default) or the DUT's SSH server (stderr apart)",
          })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { execCommand } = await import('./cli/exec-commands.js');
        exitCode = await execCommand(argv, commandWords(argv));
      },
    )
    .command(
      'ssh',
      "open a session on a DUT's SSH server through the agent (a login shell, or -- CMD); exit with its exit status",
      (y) =>
        connectionOptions(y)
          .usage('jigctl ssh --dut D [-t] [-- CMD [ARGS…]]')
          .option('dut', dutOption())
          .option('tty', {
            alias: 't',
            type: 'boolean',
            describe:
              'a pseudo-terminal even with a command or piped stdin (default: only for a login shell on a terminal)',
          }),
      async (argv) => {
        const { sshCommand } = await import('./cli/ssh-command.js');
        exitCode = await sshCommand(argv, commandWords(argv));
      },
    )
    .command(
      'cp <source> <target>',
      'copy a file to or from a DUT (DUT:/path, like scp; - is stdin or stdout), checked with SHA-256 at both ends',
      (y) =>
        connectionOptions(y)
          .positional('source', { type: 'string', demandOption: true })
          .positional('target', { type: 'string', demandOption: true })
          .option('via', {
            choices: ['ssh', 'serial'] as const,
            describe:
              "SFTP over the DUT's SSH server, or base64 over its serial console (at most 1 MiB); default: ssh when the DUT has it",
          })
          .option('timeout', { type: 'string', describe: 'give up after this long (default 10m)' })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { copyCommand } = await import('./cli/copy-command.js');
        exitCode = await copyCommand(argv, argv.source, argv.target);
      },
    )
    .command(
      'expect',
      'wait on the agent for a serial line matching a regular expression (RE2) and print it',
      (y) =>
        connectionOptions(y)
          .option('dut', dutOption())
          .option('pattern', { type: 'string', demandOption: true, describe: 'RE2 regular expression' })
          .option('timeout', { type: 'string', describe: 'give up after this long (default 30s)' })
          .option('from-now', { type: 'boolean', describe: 'only lines that arrive from now on' })
          .option('offset', { type: 'number', describe: 'search from this serial-log offset' })
          .option('since-power-on', {
            type: 'boolean',
            describe: "search from the DUT's last power-on (a fast boot is not missed)",
          })
          .conflicts('from-now', 'offset')
          .conflicts('since-power-on', ['from-now', 'offset'])
          .option('ignore-case', { alias: 'i', type: 'boolean' })
          .option('output', { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const }),
      async (argv) => {
        const { expectCommand } = await import('./cli/jig-commands.js');
        exitCode = await expectCommand(argv);
      },
    )
    .command('certs', 'create development certificates', (y) =>
      y
        .command(
          'init',
          'create a CA, a server certificate and one certificate per role',
          (c) =>
            c
              .option('dir', { type: 'string', demandOption: true })
              .option('hosts', {
                type: 'string',
                default: 'localhost,127.0.0.1',
                describe: 'server names/IPs',
              })
              .option('force', { type: 'boolean', describe: 'replace an existing CA' }),
          async (argv) => {
            const { initCerts } = await import('./certs.js');
            const files = await initCerts({ dir: argv.dir, hosts: argv.hosts.split(','), force: argv.force });
            process.stdout.write(`${files.join('\n')}\n`);
            process.stderr.write(
              `jigctl: copy only ${argv.dir}/jig to the jig host (jiglet serve --tls-dir …/jig); ` +
                `keep ${argv.dir}/ca, the CA's private key, off it\n`,
            );
          },
        )
        .command(
          'issue',
          'issue a client certificate with a role',
          (c) =>
            c
              .option('dir', {
                type: 'string',
                demandOption: true,
                describe: 'the folder `certs init` made (the CA key is in its ca/)',
              })
              .option('name', { type: 'string', demandOption: true })
              .option('role', { choices: ['admin', 'operator', 'viewer'] as const, demandOption: true })
              .option('days', { type: 'number' }),
          async (argv) => {
            const { issueClientCert } = await import('./certs.js');
            const out = await issueClientCert({
              dir: argv.dir,
              name: argv.name,
              role: argv.role,
              days: argv.days,
            });
            process.stdout.write(`${out.certPath}\n${out.keyPath}\n`);
          },
        )
        .demandCommand(1, 'name a certs command: init or issue'),
    )
    .demandCommand(1, 'name a command (jigctl --help lists them)')
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`jigctl: ${msg}\n`);
      process.exit(EXIT.usage);
    })
    .help()
    .parseAsync();
} catch (err) {
  const { code, message } = await describeFailure(err, diagnose);
  process.stderr.write(`jigctl: ${message}\n`);
  exitCode = code;
}
process.exitCode = exitCode;
