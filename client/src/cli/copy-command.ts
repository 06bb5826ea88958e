/**
 * `jigctl cp SRC DST`: copies one file to or from a DUT, written as `DUT:/path` (like scp); `-`
 * is stdin or stdout. Over SSH (SFTP) when the DUT has an `ssh:` section, else over its serial
 * console (`--via` chooses). Every copy is checked with SHA-256 at both ends. A file fetched is
 * written beside its target and renamed over it only once its checksum matched, so a failed copy
 * leaves nothing behind; a file sent keeps the local file's permission bits.
 */

import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { CopyReport } from '../dut-access-client.js';
import type { ExecTransport } from '../jig-client.js';
import { humanDuration } from './format.js';
import { abortOnStop } from './jig-commands.js';
import { connect } from './job-commands.js';
import { parseDuration } from './parse-units.js';
import type { CopyFlags } from './register/dut-shell-commands.js';
import { writeOut } from './write-out.js';

/** `DUT:/path` → its parts; a local path → undefined. A DUT name is what the jig description allows. */
export function dutPathOf(operand: string): { dut: string; path: string } | undefined {
  const match = /^([a-z0-9][a-z0-9-]{0,62}):(.*)$/.exec(operand);
  if (!match) return undefined;
  return { dut: match[1]!, path: match[2]! };
}

export async function copyCommand(flags: CopyFlags, sourceArg: string, targetArg: string): Promise<number> {
  // yargs hands a lone `-` (stdin, stdout) over as ''; an empty path means nothing else.
  const source = sourceArg === '' ? '-' : sourceArg;
  const target = targetArg === '' ? '-' : targetArg;
  const from = dutPathOf(source);
  const to = dutPathOf(target);
  if (from && to)
    throw invalidArgument(
      'copy between a DUT and this machine: one of SRC and DST is DUT:/path, the other a local file',
    );
  if (!from && !to)
    throw invalidArgument('name the DUT side as DUT:/path, e.g. jigctl cp ./app qdut-1:/tmp/app');
  if (flags.via !== undefined && flags.via !== 'ssh' && flags.via !== 'serial')
    throw invalidArgument(`--via ${flags.via}: expected ssh or serial`);
  const via = flags.via as ExecTransport | undefined;
  const timeoutMs = flags.timeout === undefined ? undefined : parseDuration('--timeout', flags.timeout);
  const client = connect(flags);
  const stop = new AbortController();
  const undo = abortOnStop(stop);
  try {
    const report = to
      ? await send(client, source, to, { via, timeoutMs, signal: stop.signal })
      : await fetch(client, from!, target, { via, timeoutMs, signal: stop.signal });
    const side = to ? `to ${target}` : `from ${source}`;
    if (flags.output === 'json') await writeOut(process.stderr, Buffer.from(`${JSON.stringify(report)}\n`));
    else
      process.stderr.write(
        `jigctl: copied ${report.bytes} bytes ${side} over ${report.via} in ${humanDuration(report.durationMs)} (${rate(report)}), sha256 ${report.sha256}\n`,
      );
    return 0;
  } finally {
    undo();
    client.close();
  }
}

type Client = ReturnType<typeof connect>;
type Options = { via?: ExecTransport; timeoutMs?: number; signal: AbortSignal };

async function send(
  client: Client,
  local: string,
  to: { dut: string; path: string },
  opts: Options,
): Promise<CopyReport> {
  if (local === '-') {
    // stdin's size is known only at its end: read it whole (a copy over SSH of a pipe).
    const pieces: Buffer[] = [];
    for await (const piece of process.stdin as AsyncIterable<Buffer>) pieces.push(piece);
    const data = Buffer.concat(pieces);
    return client.dut.copyTo(to.dut, remotePath(to.path, 'stdin'), data, data.length, opts);
  }
  const info = await stat(local).catch((err: NodeJS.ErrnoException) => {
    throw invalidArgument(`cannot read ${local}: ${err.code ?? err.message}`);
  });
  if (!info.isFile()) throw invalidArgument(`${local} is not a regular file: jigctl cp copies one file`);
  const path = remotePath(to.path, basename(local));
  return client.dut.copyTo(to.dut, path, createReadStream(local), info.size, {
    ...opts,
    mode: info.mode & 0o7777,
  });
}

async function fetch(
  client: Client,
  from: { dut: string; path: string },
  local: string,
  opts: Options,
): Promise<CopyReport> {
  if (local === '-')
    return client.dut.copyFrom(from.dut, from.path, (piece) => writeOut(process.stdout, piece), opts);
  const target = await stat(local).then(
    (info) => (info.isDirectory() ? join(local, basename(from.path)) : local),
    () => local,
  );
  const partial = join(dirname(target), `.${basename(target)}.jigctl-partial-${process.pid}`);
  const out = createWriteStream(partial, { mode: 0o644 });
  try {
    const report = await client.dut.copyFrom(
      from.dut,
      from.path,
      async (piece) => {
        if (!out.write(piece)) await once(out, 'drain');
      },
      opts,
    );
    out.end();
    await once(out, 'close');
    await rename(partial, target);
    return report;
  } catch (error) {
    out.destroy();
    await rm(partial, { force: true });
    throw error;
  }
}

/** `D:/dir/` names a folder: the file keeps its name there. */
function remotePath(path: string, name: string): string {
  return path.endsWith('/') ? `${path}${name}` : path;
}

function rate(report: CopyReport): string {
  if (report.durationMs === 0) return 'instant';
  const perSecond = (report.bytes / report.durationMs) * 1000;
  return perSecond >= 1024 * 1024
    ? `${(perSecond / 1024 / 1024).toFixed(1)} MiB/s`
    : `${(perSecond / 1024).toFixed(1)} KiB/s`;
}
