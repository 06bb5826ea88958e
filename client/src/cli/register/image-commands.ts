/**
 * jigctl's image commands (images, images rm, flash): their flags, declared once here, and their
 * registration. The handlers are in ../image-commands.ts, imported when a command runs.
 */
import type { Argv } from 'yargs';
import { type AddCommand, connectionOptions, dutOption, type FlagsOf, textOrJson } from './command-kit.js';

const imagesBuilder = (y: Argv) => connectionOptions(y).option('output', textOrJson());
/** `jigctl images` flags. */
export type ImagesFlags = FlagsOf<typeof imagesBuilder>;

const imagesRemoveBuilder = (y: Argv) =>
  connectionOptions(y).positional('sha256', { type: 'string', array: true, demandOption: true });

const flashBuilder = (y: Argv) =>
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
    .option('output', textOrJson());
/** `jigctl flash` flags. */
export type FlashFlags = FlagsOf<typeof flashBuilder>;

/** `jigctl images [rm SHA256…]`. */
export const addImages: AddCommand = (y, outcome) =>
  y.command(
    'images',
    "list the agent's cached images (images rm SHA256… removes them)",
    (i) =>
      imagesBuilder(i).command(
        'rm <sha256..>',
        'remove cached images (admin; refused while a flash reads one)',
        imagesRemoveBuilder,
        async (argv) => {
          const { imagesRemoveCommand } = await import('../image-commands.js');
          outcome.exitCode = await imagesRemoveCommand({ ...argv, sha256: argv.sha256.map(String) });
        },
      ),
    async (argv) => {
      const { imagesCommand } = await import('../image-commands.js');
      outcome.exitCode = await imagesCommand(argv);
    },
  );

/** `jigctl flash --dut D IMAGE`. */
export const addFlash: AddCommand = (y, outcome) =>
  y.command(
    'flash <image>',
    "write an image to a DUT's boot medium: upload if the agent lacks it, flash, verify, with progress",
    flashBuilder,
    async (argv) => {
      const { flashCommand } = await import('../image-commands.js');
      outcome.exitCode = await flashCommand(argv);
    },
  );
