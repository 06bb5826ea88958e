/**
 * The bundled `jigctl` keeps its cold start. What every start evaluates (the entry and what it
 * imports statically) holds the command registrations of client/src/cli/register/ and none of
 * the handlers, the client library or their heavy packages, which run only when their command
 * does; read from esbuild's metafile (dist/bundle/jigctl-meta.json, written by `npm run build`).
 * And it starts from V8's code cache, which the build makes, and works without one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** esbuild's metafile, as far as this test reads it. */
interface Metafile {
  inputs: Record<string, { imports?: { path: string; kind: string }[] }>;
}

/** The bundle folder (`npm run test:one` and `npm test` build first). */
const BUNDLE = join(import.meta.dirname, '../../dist/bundle');

/** The modules every `jigctl` start evaluates: the entry and its static imports, transitively. */
function evaluatedAtStart(meta: Metafile): string[] {
  const entry = Object.keys(meta.inputs).find((i) => i.endsWith('client/src/jigctl.js'));
  assert.ok(entry, 'the metafile has no jigctl entry');
  const seen = new Set<string>();
  const todo = [entry];
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    // import() and a require() inside a function run when they are reached, not at start.
    for (const im of meta.inputs[next]?.imports ?? []) if (im.kind === 'import-statement') todo.push(im.path);
  }
  return [...seen];
}

/** Runs a copy of the installed jigctl in `dir`. */
function jigctlIn(dir: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(dir, 'jigctl.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bundled jigctl', () => {
  it('evaluates the command registrations at start, and each handler only when its command runs', async () => {
    const meta = JSON.parse(await readFile(join(BUNDLE, 'jigctl-meta.json'), 'utf8')) as Metafile;
    const inputs = evaluatedAtStart(meta);
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
        /node_modules\/(@peculiar|re2js|pg|cli-progress|ssh2|zod)\//.test(i) ||
        i.includes('client/src/queue/') ||
        i.includes('protocol/gen/'),
    );
    assert.deepEqual(tooEarly, [], 'evaluated by every jigctl start, though only some commands need them');
  });

  it('starts from the code cache the build made, and without one (rejected or missing) still runs and makes one', () => {
    // A copy beside dist/bundle, so the bundle's paths relative to its folder still hold and the
    // installed cache is never touched while other tests run jigctl.
    const dir = mkdtempSync(join(BUNDLE, '..', 'bundle-cache-test-'));
    try {
      for (const f of ['jigctl.js', 'jigctl.cjs', 'jigctl.cache'])
        copyFileSync(join(BUNDLE, f), join(dir, f));
      const cache = join(dir, 'jigctl.cache');
      const built = readFileSync(cache);
      assert.ok(built.length > 100_000, `the build made a code cache (${built.length} bytes)`);

      const version = jigctlIn(dir, ['--version']);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, /^\d+\.\d+\.\d+/);
      assert.ok(readFileSync(cache).equals(built), 'V8 accepted the cache, so it was not rewritten');

      // What another Node or other V8 flags would see: V8 refuses the cache.
      writeFileSync(cache, 'not a code cache');
      const rejected = jigctlIn(dir, ['--version']);
      assert.equal(rejected.code, 0, rejected.stderr);
      assert.equal(rejected.stderr, '');
      const remade = readFileSync(cache);
      assert.ok(remade.length > 100_000, 'a refused cache is made again at exit');
      assert.equal(jigctlIn(dir, ['--version']).code, 0);
      assert.ok(readFileSync(cache).equals(remade), 'and the remade one is accepted');

      rmSync(cache);
      const missing = jigctlIn(dir, ['run', '--help']);
      assert.equal(missing.code, 0, missing.stderr);
      assert.match(missing.stdout, /jigctl run/);
      assert.ok(existsSync(cache), 'a missing cache is made at exit');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
