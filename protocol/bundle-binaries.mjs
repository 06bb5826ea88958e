// Bundles the compiled binaries (tsc's output under dist/) into dist/bundle/ with esbuild, so a cold
// `jigctl` or `jig-driver` start reads a few files instead of ~100 modules through Node's ESM loader.
// Run by `npm run build` after tsc. dist/bundle/meta.json and jigctl-meta.json (esbuild's
// metafiles) record which module went into which file; tests read them to keep the lazy parts lazy.
//
// - jig-driver: ESM with code splitting: every dynamic import() (the power registry, libusb) stays a
//   lazy chunk, loaded only when that path runs.
// - jigctl: one CommonJS file (jigctl.cjs) started by a small ESM file (jigctl.js, from
//   client/src/jigctl-start.ts) from V8's code cache (jigctl.cache, made here by one throw-away
//   run). A cold start then deserializes compiled code instead of parsing it: 0.20 s instead of
//   0.285 s for `jigctl run -- true` (README, Benchmarks). Node 20 cannot cache ES modules. Module
//   bodies still run lazily: esbuild wraps each module that is import()ed in an init function.
// - Native and WASM packages, and packages that read files next to their own modules, stay external:
//   they are imported from node_modules as before.
// - Code that finds files relative to its own module (import.meta.url, import.meta.dirname, and
//   __dirname/__filename in CommonJS dependencies) keeps its meaning: each is rewritten to the
//   module's original location, relative to the bundle's own URL, so the bundle still finds
//   dist/protocol/proto, node_modules/yargs/locales and the like, wherever the package is moved.
// - CommonJS dependencies inside the ESM bundle get `require` from a createRequire banner.
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const OUT = join(DIST, 'bundle');

/** Entry name (the file in dist/bundle/) → tsc's output. */
const ENTRIES = {
  'jig-driver': join(DIST, 'jig-drivers/src/jig-driver.js'),
};
const JIGCTL = join(DIST, 'client/src/jigctl.js');
/**
 * Packages only some jigctl commands use, left out of jigctl.cjs and required from node_modules
 * when their command runs (certs, queue, flash progress): every start reads the bundle and its
 * code cache, and these are ~1.4 MB of its 3.7. All have CommonJS entries. (`run` reads JUnit
 * files, so fast-xml-parser stays in.)
 */
const JIGCTL_RARE = [
  '@peculiar/*',
  'asn1js',
  'tsyringe',
  'reflect-metadata',
  'pg',
  'pg-*',
  'pgpass',
  'cli-progress',
  'zod',
];
const JIGCTL_START = join(DIST, 'client/src/jigctl-start.js');

/** Loaded from node_modules at run time: native addons, WASM, and files read next to their modules. */
const EXTERNAL = [
  'usb',
  'serialport',
  '@serialport/*',
  '@electric-sql/pglite',
  '@electric-sql/pglite/*',
  '@electric-sql/pglite-socket',
  'pg-native',
  'xz-decompress',
  'playwright-core',
  'pino',
  'thread-stream',
  'pino-pretty',
  // Loaded by grpc-js only for channelz and ORCA, never by these binaries: kept out of their parse.
  '@grpc/proto-loader',
];

// Every chunk sits in OUT itself (no sub-folders), so any chunk's import.meta.url locates OUT. The
// banner names it for the rewritten modules below: esbuild must not see `import.meta` in a CommonJS
// module, or it would take it for an ES module and break its `exports`.
const BANNER = [
  "import { createRequire as __jigletCreateRequire } from 'node:module';",
  "import { fileURLToPath as __jigletFileURLToPath } from 'node:url';",
  'const require = __jigletCreateRequire(import.meta.url);',
  'const __jigletChunkUrl = import.meta.url;',
].join('\n');
/** The same names for the CommonJS bundle, which sits in OUT too. */
const CJS_BANNER = [
  "const __jigletChunkUrl = require('node:url').pathToFileURL(__filename).href;",
  "const __jigletFileURLToPath = require('node:url').fileURLToPath;",
].join('\n');

const SELF_URL = /\bimport\.meta\.url\b/g;
const SELF_DIRNAME = /\bimport\.meta\.dirname\b/g;
const SELF_FILENAME = /\bimport\.meta\.filename\b/g;
const CJS_PATHS = /\b__dirname\b|\b__filename\b/;
const DECLARES_CJS_PATHS = /\b(?:const|let|var|function)\s+__(?:dirname|filename)\b/;

/** Rewrites a module's references to its own location into its original location. */
const keepOwnLocation = {
  name: 'keep-own-location',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const hasMeta = text.includes('import.meta');
      const usesCjsPaths = CJS_PATHS.test(text) && !DECLARES_CJS_PATHS.test(text);
      if (!hasMeta && !usesCjsPaths) return undefined;
      const rel = relative(OUT, args.path).split(sep).join('/');
      const url = `new URL(${JSON.stringify(rel)}, __jigletChunkUrl)`;
      const file = `__jigletFileURLToPath(${url})`;
      const dir = `__jigletFileURLToPath(new URL('.', ${url})).replace(/\\/$/, '')`;
      let body = text
        .replace(SELF_URL, () => `${url}.href`)
        .replace(SELF_FILENAME, () => file)
        .replace(SELF_DIRNAME, () => dir);
      // CommonJS modules are wrapped in a function by esbuild, so these stay local to the module.
      if (usesCjsPaths) body = `var __filename = ${file};\nvar __dirname = ${dir};\n${body}`;
      return { contents: body, loader: 'js' };
    });
  },
};

// No chunk of an earlier build may linger: chunk names are content hashes.
await rm(OUT, { recursive: true, force: true });
/**
 * yargs renders a command's help before running it (to have it ready for an error), through cliui,
 * wrap-ansi and string-width; string-width's first call compiles a very large emoji regex, a
 * noticeable share of a cold `jigctl run`. Every `import stringWidth from 'string-width'` gets the
 * same function with a printable-ASCII fast path (width = length, exactly what string-width
 * answers for such text); anything else goes to the real string-width, loaded then.
 */
const asciiStringWidth = {
  name: 'ascii-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.kind !== 'import-statement' || args.pluginData?.real) return undefined;
      const real = await b.resolve('string-width', {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: { real: true },
      });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'ascii-string-width' };
    });
    b.onLoad({ filter: /.*/, namespace: 'ascii-string-width' }, (args) => ({
      // The real string-width is required on first non-ASCII use: loading it builds Unicode
      // property regexes (\p{RGI_Emoji} with the v flag alone takes ~9 ms).
      contents: [
        'const PRINTABLE_ASCII = /^[\\x20-\\x7e]*$/;',
        'let stringWidthFull;',
        'export default function stringWidth(string, options) {',
        "  if (typeof string === 'string' && PRINTABLE_ASCII.test(string)) return string.length;",
        `  stringWidthFull ??= require(${JSON.stringify(args.path)}).default;`,
        '  return stringWidthFull(string, options);',
        '}',
      ].join('\n'),
      loader: 'js',
      resolveDir: dirname(args.path),
    }));
  },
};

/**
 * string-width makes an Intl.Segmenter when loaded (about 7 ms each, and yargs' helpers bring three
 * copies); the ASCII path above never uses it. Made on first use instead.
 */
const SEGMENTER_AT_LOAD = 'const segmenter = new Intl.Segmenter();';
const lazySegmenter = {
  name: 'lazy-segmenter',
  setup(b) {
    b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes(SEGMENTER_AT_LOAD)) return undefined;
      const lazy =
        'let segmenterMade;\n' +
        'const segmenter = { segment: (s) => (segmenterMade ??= new Intl.Segmenter()).segment(s) };';
      return { contents: text.replace(SEGMENTER_AT_LOAD, () => lazy), loader: 'js' };
    });
  },
};

/**
 * zod puts all its ~50 message locales in every bundle (`z.locales`, a namespace esbuild cannot
 * shake), about 0.3 MB to parse at every start; jiglet only ever uses English, zod's default.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, () => ({
      contents: 'export { default as en } from "./en.js";',
      loader: 'js',
    }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  plugins: [asciiStringWidth, lazySegmenter, zodEnglishOnly, keepOwnLocation],
  legalComments: 'none',
  // node_modules may be a symlink (worktrees): locations stay relative to the package, not its target.
  preserveSymlinks: true,
  sourcemap: false,
  logLevel: 'warning',
  metafile: true,
};
const result = await build({
  ...common,
  entryPoints: ENTRIES,
  outdir: OUT,
  splitting: true,
  format: 'esm',
  chunkNames: 'chunk-[hash]',
  banner: { js: BANNER },
});
await writeFile(join(OUT, 'meta.json'), JSON.stringify(result.metafile));

const jigctl = await build({
  ...common,
  external: [...EXTERNAL, ...JIGCTL_RARE],
  entryPoints: [JIGCTL],
  outfile: join(OUT, 'jigctl.cjs'),
  format: 'cjs',
  banner: { js: CJS_BANNER },
});
await writeFile(join(OUT, 'jigctl-meta.json'), JSON.stringify(jigctl.metafile));
// The entry's `#!` line is no JavaScript inside the CommonJS wrapper jigctl-start.ts compiles.
const cjsPath = join(OUT, 'jigctl.cjs');
await writeFile(cjsPath, (await readFile(cjsPath, 'utf8')).replace(/^#!.*\n/, ''));
await build({
  entryPoints: [JIGCTL_START],
  outfile: join(OUT, 'jigctl.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  banner: { js: '#!/usr/bin/env node' },
  legalComments: 'none',
  logLevel: 'warning',
});
await chmod(join(OUT, 'jigctl.js'), 0o755);
await writeCodeCache();

/**
 * Makes jigctl.cache by running jigctl once: `certs init` into a throw-away folder, then `run`
 * against a port nobody listens on, which passes through the connection code every command uses.
 * The cache is written at exit (see jigctl-start.ts); a failure here only costs speed.
 */
async function writeCodeCache() {
  const dir = await mkdtemp(join(tmpdir(), 'jiglet-code-cache-'));
  try {
    const port = await closedPort();
    const jigctlBin = join(OUT, 'jigctl.js');
    const run = (args, env = {}) =>
      spawnSync(process.execPath, [jigctlBin, ...args], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
      });
    const certs = run(['certs', 'init', '--dir', dir]);
    if (certs.status !== 0) throw new Error(certs.stderr);
    // That run wrote a cache of what it compiled (certificate code no other command needs).
    await rm(join(OUT, 'jigctl.cache'), { force: true });
    const warm = run(['run', '--', 'true'], {
      JIGLET_WRITE_CODE_CACHE: '1',
      JIGLET_ADDR: `127.0.0.1:${port}`,
      JIGLET_CA: join(dir, 'ca.crt'),
      JIGLET_CERT: join(dir, 'operator.crt'),
      JIGLET_KEY: join(dir, 'operator.key'),
    });
    if (!/cannot reach the agent/.test(warm.stderr)) throw new Error(warm.stderr || `exit ${warm.status}`);
  } catch (err) {
    console.warn(`jigctl's code cache was not made (its starts will be slower): ${err.message}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A loopback port that was free a moment ago: nothing accepts connections there. */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
