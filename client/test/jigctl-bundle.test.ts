/**
 * The bundled `jigctl` keeps its cold start: what every start loads (the entry chunk and the
 * chunks it imports statically) holds the command registrations of client/src/cli/register/ and
 * none of the handlers, the client library or their heavy packages, which load only when their
 * command runs. Read from esbuild's metafile (dist/bundle/meta.json), written by `npm run build`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** esbuild's metafile, as far as this test reads it. */
interface Metafile {
  outputs: Record<
    string,
    { entryPoint?: string; inputs: Record<string, unknown>; imports?: { path: string; kind: string }[] }
  >;
}

/** The bundle folder (`npm run test:one` and `npm test` build first). */
const BUNDLE = join(import.meta.dirname, '../../dist/bundle');

/** The modules every `jigctl` start loads: the entry's output and its static imports, transitively. */
function loadedAtStart(meta: Metafile): string[] {
  const entry = Object.keys(meta.outputs).find((o) =>
    meta.outputs[o]?.entryPoint?.endsWith('client/src/jigctl.js'),
  );
  assert.ok(entry, 'the metafile has no jigctl entry');
  const seen = new Set<string>();
  const todo = [entry];
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    for (const im of meta.outputs[next]?.imports ?? [])
      if (im.kind === 'import-statement') todo.push(im.path);
  }
  return [...seen].flatMap((o) => Object.keys(meta.outputs[o]?.inputs ?? {}));
}

describe('bundled jigctl', () => {
  it('loads the command registrations at start, and each handler only when its command runs', async () => {
    const meta = JSON.parse(await readFile(join(BUNDLE, 'meta.json'), 'utf8')) as Metafile;
    const inputs = loadedAtStart(meta);
    const registrations = inputs.filter((i) => i.includes('client/src/cli/register/'));
    assert.ok(
      registrations.some((i) => i.endsWith('register/dut-shell-commands.js')),
      inputs.join('\n'),
    );
    assert.ok(
      registrations.some((i) => i.endsWith('register/queue-commands.js')),
      inputs.join('\n'),
    );
    const tooEarly = inputs.filter(
      (i) =>
        /client\/src\/cli\/[^/]+-commands?\.js$/.test(i) ||
        /client\/src\/(jiglet-client|jig-client|certs)\.js$/.test(i) ||
        /node_modules\/(@peculiar|re2js|pg|cli-progress|ssh2)\//.test(i) ||
        i.includes('client/src/queue/') ||
        i.includes('protocol/gen/'),
    );
    assert.deepEqual(tooEarly, [], 'loaded by every jigctl start, though only some commands need them');
  });
});
