/**
 * The installed `jigctl` (dist/bundle/jigctl.js): runs the CommonJS bundle beside it
 * (jigctl.cjs) from V8's code cache (jigctl.cache), so a cold start deserializes compiled code
 * instead of parsing ~4 MB of JavaScript. Node 20 has no compile cache of its own
 * (module.enableCompileCache came in Node 22) and cannot cache ES modules, hence vm.Script.
 *
 * The cache is made by `npm run build` (protocol/bundle-binaries.mjs runs a throw-away command
 * with JIGLET_WRITE_CODE_CACHE=1). V8 refuses a cache made by another V8 or with other flags;
 * the bundle then compiles as usual, and the cache is rewritten at exit where the folder is
 * writable, so a Node upgrade costs one slow start, never a failure.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, Script } from 'node:vm';

const here = dirname(fileURLToPath(import.meta.url));
const bundle = join(here, 'jigctl.cjs');
const cacheFile = join(here, 'jigctl.cache');

let cachedData: Buffer | undefined;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // No cache yet: compile as usual, and write one at exit.
}
const script = new Script(Module.wrap(readFileSync(bundle, 'utf8')), {
  filename: bundle,
  cachedData,
  importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
});
if (cachedData === undefined || script.cachedDataRejected || process.env.JIGLET_WRITE_CODE_CACHE === '1') {
  // At exit, so the cache holds every function this run compiled, not just the top level.
  process.once('exit', () => {
    const temp = `${cacheFile}.${process.pid}.tmp`;
    try {
      writeFileSync(temp, script.createCachedData());
      renameSync(temp, cacheFile);
    } catch {
      // A read-only install (or a job's uid): this start was slower, nothing more.
    }
  });
}
const module = { exports: {}, id: bundle, filename: bundle, loaded: false };
const run = script.runInThisContext() as (
  exports: unknown,
  require: NodeJS.Require,
  module: unknown,
  filename: string,
  dirname: string,
) => void;
run.call(module.exports, module.exports, createRequire(bundle), module, bundle, here);
