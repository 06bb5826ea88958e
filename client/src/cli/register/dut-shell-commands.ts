/**
 * jigctl's commands that reach a DUT's shell (console, exec, ssh, cp): their flags, declared once
 * here, and their registration. The handlers are in ../console-command.ts, ../exec-commands.ts,
 * ../ssh-command.ts and ../copy-command.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import {
  type AddCommand,
  commandWords,
  connectionOptions,
  dutOption,
  type FlagsOf,
  textOrJson,
} from './command-kit.js';

const consoleBuilder = (y: Argv) =>
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
      describe: 'piped stdin: after it ends, wait for a line matching this RE2 pattern (exit 1 if none)',
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
    );
/** `jigctl console` flags. */
export type ConsoleFlags = FlagsOf<typeof consoleBuilder>;

const execBuilder = (y: Argv) =>
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
      describe: "its stdin is the console: jigctl's stdin is typed to it, then Ctrl-D (default /dev/null)",
    })
    .option('keep-kernel-lines', {
      type: 'boolean',
      describe: 'leave kernel console lines in the output (default: to stderr)',
    })
    .option('via', {
      choices: ['serial', 'ssh'] as const,
      describe: "how to reach the shell: the serial console (default) or the DUT's SSH server (stderr apart)",
    })
    .option('output', textOrJson());
/** `jigctl exec` flags. */
export type ExecFlags = FlagsOf<typeof execBuilder>;

const sshBuilder = (y: Argv) =>
  connectionOptions(y)
    .usage('jigctl ssh --dut D [-t] [-- CMD [ARGS…]]')
    .option('dut', dutOption())
    .option('tty', {
      alias: 't',
      type: 'boolean',
      describe:
        'a pseudo-terminal even with a command or piped stdin (default: only for a login shell on a terminal)',
    });
/** `jigctl ssh` flags. */
export type SshFlags = FlagsOf<typeof sshBuilder>;

const copyBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('source', { type: 'string', demandOption: true })
    .positional('target', { type: 'string', demandOption: true })
    .option('via', {
      choices: ['ssh', 'serial'] as const,
      describe:
        "SFTP over the DUT's SSH server, or base64 over its serial console (at most 1 MiB); default: ssh when the DUT has it",
    })
    .option('timeout', { type: 'string', describe: 'give up after this long (default 10m)' })
    .option('output', textOrJson());
/** `jigctl cp` flags. */
export type CopyFlags = FlagsOf<typeof copyBuilder>;

/** `jigctl console`. */
export const addConsole: AddCommand = (y, outcome) =>
  y.command(
    'console',
    "attach to a DUT's console; Ctrl-] detaches (piped stdin: shows the DUT's answer, then detaches)",
    consoleBuilder,
    async (argv) => {
      const { consoleCommand } = await import('../console-command.js');
      outcome.exitCode = await consoleCommand(argv);
    },
  );

/** `jigctl exec -- CMD`. */
export const addExec: AddCommand = (y, outcome) =>
  y.command(
    'exec',
    "run a command on a DUT's shell over its serial console; exit with its exit code (124 on timeout)",
    execBuilder,
    async (argv) => {
      const { execCommand } = await import('../exec-commands.js');
      outcome.exitCode = await execCommand(argv, commandWords(argv));
    },
  );

/** `jigctl ssh [-- CMD]`. */
export const addSsh: AddCommand = (y, outcome) =>
  y.command(
    'ssh',
    "open a session on a DUT's SSH server through the agent (a login shell, or -- CMD); exit with its exit status",
    sshBuilder,
    async (argv) => {
      const { sshCommand } = await import('../ssh-command.js');
      outcome.exitCode = await sshCommand(argv, commandWords(argv));
    },
  );

/** `jigctl cp SOURCE TARGET`. */
export const addCopy: AddCommand = (y, outcome) =>
  y.command(
    'cp <source> <target>',
    'copy a file to or from a DUT (DUT:/path, like scp; - is stdin or stdout), checked with SHA-256 at both ends',
    copyBuilder,
    async (argv) => {
      const { copyCommand } = await import('../copy-command.js');
      outcome.exitCode = await copyCommand(argv, argv.source, argv.target);
    },
  );
