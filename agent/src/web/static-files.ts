/**
 * The web console's static files: xterm.js and its stylesheet from node_modules, and the page's
 * own script and stylesheet from agent/src/web/static. Only the files named here are served (no
 * path from a request ever reaches the file system), read once at start.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** One file as served. */
export interface StaticFile {
  body: Buffer;
  contentType: string;
}

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/**
 * The package root: the same folder whether this runs from source (tsx) or from dist/, since
 * tsc copies no assets; walks up to the first package.json.
 */
function packageRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${import.meta.dirname}`);
    dir = up;
  }
  return dir;
}

/** Reads the served files: URL path (under /static/) → file. */
export function loadStaticFiles(): ReadonlyMap<string, StaticFile> {
  const xterm = dirname(createRequire(import.meta.url).resolve('@xterm/xterm/package.json'));
  const own = join(packageRoot(), 'agent', 'src', 'web', 'static');
  const files: [string, string, string][] = [
    ['/static/xterm.mjs', join(xterm, 'lib', 'xterm.mjs'), JS],
    ['/static/xterm.css', join(xterm, 'css', 'xterm.css'), CSS],
    ['/static/console.js', join(own, 'console.js'), JS],
    ['/static/page.css', join(own, 'page.css'), CSS],
  ];
  return new Map(files.map(([path, file, contentType]) => [path, { body: readFileSync(file), contentType }]));
}
