/**
 * `jigctl dut …` (state, check, goto, forget-host-key): their flags, declared once here, and their
 * registration. The handlers are in ../dut-commands.ts and ../exec-commands.ts (goto), imported
 * when a command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, connectionOptions, type FlagsOf, textOrJson } from './command-kit.js';

const dutStateBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('dut', { type: 'string', demandOption: true })
    .positional('state', { choices: ['good', 'bad', 'maintenance'] as const, demandOption: true })
    .option('reason', { type: 'string', describe: 'why, for whoever finds it out of service' })
    .option('output', textOrJson());
/** `jigctl dut state` flags. */
export type DutStateFlags = FlagsOf<typeof dutStateBuilder>;

const dutCheckBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('dut', { type: 'string', demandOption: true })
    .option('output', textOrJson());
/** `jigctl dut check` flags. */
export type DutCheckFlags = FlagsOf<typeof dutCheckBuilder>;

const gotoBuilder = (y: Argv) =>
  connectionOptions(y)
    .positional('dut', { type: 'string', demandOption: true })
    .positional('state', { choices: ['off', 'booted', 'shell'] as const, demandOption: true })
    .option('image', {
      type: 'string',
      describe: 'an image file the DUT must run (flashed unless it has it)',
    })
    .option('timeout', { type: 'string', describe: 'give up after this long (default 5m)' })
    .option('output', textOrJson());
/** `jigctl dut goto` flags. */
export type GotoFlags = FlagsOf<typeof gotoBuilder>;

const forgetHostKeyBuilder = (y: Argv) =>
  connectionOptions(y).positional('dut', { type: 'string', demandOption: true });
/** `jigctl dut forget-host-key` flags. */
export type ForgetHostKeyFlags = FlagsOf<typeof forgetHostKeyBuilder>;

/** `jigctl dut state|check|goto|forget-host-key`. */
export const addDut: AddCommand = (y, outcome) =>
  y.command('dut', "a DUT's health (admin) and state: out of service, back, check it, goto a state", (d) =>
    d
      .command(
        'state <dut> <state>',
        'set a DUT good (back in service), bad or maintenance (no new claims; a lease held now goes on)',
        dutStateBuilder,
        async (argv) => {
          const { dutStateCommand } = await import('../dut-commands.js');
          outcome.exitCode = await dutStateCommand(argv);
        },
      )
      .command(
        'check <dut>',
        "run the DUT's health check now and wait for it (exit 0 passed, 1 failed); its result sets the health",
        dutCheckBuilder,
        async (argv) => {
          const { dutCheckCommand } = await import('../dut-commands.js');
          outcome.exitCode = await dutCheckCommand(argv);
        },
      )
      .command(
        'goto <dut> <state>',
        'bring a DUT to off, booted or shell (logged in), doing only what is missing; --image: running that image',
        gotoBuilder,
        async (argv) => {
          const { gotoCommand } = await import('../exec-commands.js');
          outcome.exitCode = await gotoCommand(argv);
        },
      )
      .command(
        'forget-host-key <dut>',
        'forget the SSH host key jiglet learnt for a DUT reinstalled outside jiglet (admin); the next connection learns the new one',
        forgetHostKeyBuilder,
        async (argv) => {
          const { forgetHostKeyCommand } = await import('../dut-commands.js');
          outcome.exitCode = await forgetHostKeyCommand(argv);
        },
      )
      .demandCommand(1, 'name a dut command: state, check, goto or forget-host-key'),
  );
