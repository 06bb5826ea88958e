/**
 * `jig-driver flash` as its own process, registered the way jig-driver.ts registers commands, with
 * one extra mux driver for tests: `{"driver":"log"}` prints each switch to stderr.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { createFlashCommand, EXIT_USAGE } from '../../../src/flash/flash-command.js';
import type { StorageMux } from '../../../src/storage-mux.js';

function logMux(config: unknown): StorageMux {
  if ((config as { driver?: unknown }).driver !== 'log') throw new Error('unknown test mux');
  return {
    toHost: async () => void process.stderr.write('mux: toHost\n'),
    toDut: async () => void process.stderr.write('mux: toDut\n'),
    status: async () => 'unknown',
  };
}

await yargs(hideBin(process.argv))
  .scriptName('jig-driver')
  .strict()
  .command(createFlashCommand({ muxFromConfig: logMux }))
  .demandCommand(1)
  .fail((msg, err) => {
    if (err) throw err;
    process.stderr.write(`jig-driver: ${msg}\n`);
    process.exit(EXIT_USAGE);
  })
  .parseAsync();
