/**
 * jigctl's image and flash commands: `images`, `images rm`, and `flash`, which hashes, uploads
 * what the agent lacks, flashes and verifies, with one progress bar for the whole thing.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import type { ConnectionFlags } from '../connection.js';
import type { FlashEvent } from '../flash-client.js';
import { FlashProgressView } from './flash-progress.js';
import { renderTable } from './format.js';
import { connect } from './job-commands.js';
import type { FlashFlags, ImagesFlags } from './register/image-commands.js';

const MiB = 1024 * 1024;

/** `jigctl images`: the agent's cached images. */
export async function imagesCommand(flags: ImagesFlags): Promise<number> {
  const client = connect(flags);
  try {
    const { images, limitBytes, usedBytes } = await client.images.list();
    if (flags.output === 'json') {
      const out = images.map((i) => ({ ...i, size: Number(i.size) }));
      process.stdout.write(`${JSON.stringify({ images: out, limitBytes, usedBytes }, null, 2)}\n`);
      return 0;
    }
    const rows = images.map((i) => [
      i.sha256.slice(0, 16),
      `${(Number(i.size) / MiB).toFixed(1)} MiB`,
      i.name,
      i.lastUsed?.toISOString().replace('T', ' ').slice(0, 19) ?? '-',
      i.inUse > 0 ? `in use (${i.inUse})` : '',
    ]);
    process.stdout.write(
      rows.length === 0
        ? 'no images cached\n'
        : `${renderTable(['SHA256', 'SIZE', 'NAME', 'LAST USED', ''], rows)}\n`,
    );
    process.stdout.write(`${(usedBytes / MiB).toFixed(0)} of ${(limitBytes / MiB).toFixed(0)} MiB used\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** `jigctl images rm SHA256…`. */
export async function imagesRemoveCommand(flags: ConnectionFlags & { sha256: string[] }): Promise<number> {
  const client = connect(flags);
  try {
    for (const sha of flags.sha256) await client.images.remove(sha);
    return 0;
  } finally {
    client.close();
  }
}

/** Refuses a path that is not a readable file, in words ("no such file"), before anything is sent. */
function readableFile(what: string, path: string): void {
  try {
    if (!statSync(path).isFile()) throw invalidArgument(`${what} ${path} is not a file`);
    accessSync(path, constants.R_OK);
  } catch (err) {
    if (err instanceof JigletError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code;
    throw invalidArgument(`cannot read ${what} ${path}: ${why}`);
  }
}

/** `jigctl flash --dut D IMAGE`: one bar across hashing, upload and flashing; exit 0 on a verified flash. */
export async function flashCommand(flags: FlashFlags): Promise<number> {
  for (const [flag, path] of [
    ['the image', flags.image],
    ['--bmap', flags.bmap],
  ] as const) {
    if (path !== undefined) readableFile(flag, path);
  }
  const verify = flags.verify ?? true;
  if (!verify)
    process.stderr.write('jigctl: WARNING: --no-verify: what is written will not be read back and checked\n');
  const client = connect(flags);
  const view = new FlashProgressView(
    process.stderr,
    process.stderr.isTTY === true && flags.output !== 'json',
  );
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const onEvent = (e: FlashEvent): void => {
      if (e.type === 'flash' && flags.output === 'json')
        process.stdout.write(`${JSON.stringify({ flash: e.progress })}\n`);
      view.onEvent(e);
    };
    const result = await client.flash(flags.dut, flags.image, {
      bmap: flags.bmap,
      verify,
      onEvent,
      signal: controller.signal,
    });
    view.finish();
    const summary = `${flags.dut}: flashed ${result.imageSha256.slice(0, 12)} (${result.uploaded > 0 ? `${(result.uploaded / MiB).toFixed(1)} MiB uploaded` : 'already on the agent'}; ${verify ? 'verified' : 'NOT verified'}; job ${result.jobId})`;
    if (flags.output === 'json') process.stdout.write(`${JSON.stringify({ done: result })}\n`);
    else process.stdout.write(`${summary}\n`);
    return 0;
  } finally {
    view.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    client.close();
  }
}
