/**
 * jigctl's jig commands (jig, power, serial tail, expect): their flags, declared once here, and
 * their registration. The handlers are in ../jig-commands.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, connectionOptions, dutOption, type FlagsOf, textOrJson } from './command-kit.js';

const jigListBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('output', {
      alias: 'o',
      choices: ['table', 'wide', 'json'] as const,
      default: 'table' as const,
      describe: 'table fits 120 columns; wide adds driver, port, capture job and last event',
    })
    .option('label', { type: 'string', array: true, describe: 'only DUTs with this key=value label' });
/** `jigctl jig` flags. */
export type JigListFlags = FlagsOf<typeof jigListBuilder>;

const powerBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('action', { choices: ['on', 'off', 'cycle', 'status'] as const, demandOption: true })
    .option('dut', dutOption())
    .option('off-time', { type: 'string', describe: 'for cycle: time to stay off (3s)' })
    .option('output', textOrJson());
/** `jigctl power` flags. */
export type PowerFlags = FlagsOf<typeof powerBuilder>;

const serialTailBuilder = (y: Argv) =>
  connectionOptions(y)
    .option('dut', dutOption())
    .option('follow', { alias: 'f', type: 'boolean', describe: 'keep printing until Ctrl-C' })
    .option('offset', { type: 'number', describe: 'start at this serial-log offset' })
    .option('since', { type: 'string', describe: 'start this long ago (10m) or at an ISO time' })
    .option('from-end', { type: 'boolean', describe: 'only what arrives from now on' })
    .conflicts('offset', ['since', 'from-end'])
    .conflicts('since', 'from-end')
    .option('output', { alias: 'o', choices: ['raw', 'json'] as const, default: 'raw' as const });
/** `jigctl serial tail` flags. */
export type SerialTailFlags = FlagsOf<typeof serialTailBuilder>;

const expectBuilder = (y: Argv) =>
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
    .option('output', textOrJson());
/** `jigctl expect` flags. */
export type ExpectFlags = FlagsOf<typeof expectBuilder>;

/** `jigctl jig`. */
export const addJig: AddCommand = (y, outcome) =>
  y.command(
    'jig',
    'list the DUTs with their health, labels, power and serial state',
    jigListBuilder,
    async (argv) => {
      const { jigListCommand } = await import('../jig-commands.js');
      outcome.exitCode = await jigListCommand(argv);
    },
  );

/** `jigctl power on|off|cycle|status`. */
export const addPower: AddCommand = (y, outcome) =>
  y.command(
    'power <action>',
    "switch or read a DUT's power (status prints on, off or unknown)",
    powerBuilder,
    async (argv) => {
      const { powerCommand } = await import('../jig-commands.js');
      outcome.exitCode = await powerCommand(argv);
    },
  );

/** `jigctl serial tail`. */
export const addSerial: AddCommand = (y, outcome) =>
  y.command('serial', "read a DUT's serial log", (s) =>
    s
      .command(
        'tail',
        'print the serial log: bytes on stdout, capture events on stderr (-o json: one record a line)',
        serialTailBuilder,
        async (argv) => {
          const { serialTailCommand } = await import('../jig-commands.js');
          outcome.exitCode = await serialTailCommand(argv);
        },
      )
      .demandCommand(1, 'name a serial command: tail'),
  );

/** `jigctl expect --pattern RE`. */
export const addExpect: AddCommand = (y, outcome) =>
  y.command(
    'expect',
    'wait on the agent for a serial line matching a regular expression (RE2) and print it',
    expectBuilder,
    async (argv) => {
      const { expectCommand } = await import('../jig-commands.js');
      outcome.exitCode = await expectCommand(argv);
    },
  );
