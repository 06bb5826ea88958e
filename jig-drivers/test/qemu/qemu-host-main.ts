/**
 * A stand-in for `jig-driver qemu-host` while jig-driver.ts does not register the command yet:
 * the same command module on a yargs instance, with jig-driver's error handling and exit codes.
 *   node --import tsx jig-drivers/test/qemu/qemu-host-main.ts qemu-host --name … --control …
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { JigletError } from '../../../protocol/src/errors.js';
import { qemuHostCommand } from '../../src/qemu/index.js';

/** Exit code for a bad invocation (sysexits EX_USAGE), as jig-driver uses. */
const EXIT_USAGE = 64;

try {
  await yargs(hideBin(process.argv))
    .scriptName('jig-driver')
    .strict()
    .command(qemuHostCommand)
    .demandCommand(1)
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`jig-driver: ${msg}\n`);
      process.exit(EXIT_USAGE);
    })
    .parseAsync();
} catch (err) {
  process.stderr.write(`jig-driver: ${(err as Error).message}\n`);
  process.exitCode = err instanceof JigletError && err.code === 'JIGLET_E_INVALID_ARGUMENT' ? EXIT_USAGE : 1;
}
