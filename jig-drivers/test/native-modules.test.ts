/**
 * The two native modules the drivers need load and answer on this machine: `usb` (USB relays,
 * USB-serial matching) and `@serialport/bindings-cpp` (serial capture). Both ship prebuilt
 * binaries in their own package (package.json's allowScripts lets their node-gyp-build fallback
 * compile where none fits); a broken install shows here rather than on a jig at the first power-on.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
/** node-gyp-build's own resolver: the .node file each module loads (a prebuild, or a local build). */
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

describe('native modules', () => {
  it('usb loads its binary and lists devices', async () => {
    const usb = await import('usb');
    assert.ok(Array.isArray(usb.getDeviceList()));
    const binary = nodeGypBuild.path(dirname(require.resolve('usb/package.json')));
    assert.match(binary, /\.node$/);
  });

  it('@serialport/bindings-cpp loads its binary and opens a terminal at a baud rate', async () => {
    const { autoDetect } = await import('@serialport/bindings-cpp');
    // A new pty's master: a real tty, opened and set through the binary (list() shells out to udevadm).
    const port = await autoDetect().open({ path: '/dev/ptmx', baudRate: 115200 });
    try {
      assert.deepEqual(await port.getBaudRate(), { baudRate: 115200 });
    } finally {
      await port.close();
    }
    const binary = nodeGypBuild.path(dirname(require.resolve('@serialport/bindings-cpp/package.json')));
    assert.match(binary, /\.node$/);
  });

  it('every dependency with an install script is allowed or denied in package.json', () => {
    // npm 11 warns about unlisted ones and npm 12 skips them, so a missing entry changes the tree.
    const root = join(import.meta.dirname, '../..');
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { hasInstallScript?: boolean }>;
    };
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      allowScripts: Record<string, boolean>;
    };
    const withScripts = Object.entries(lock.packages)
      .filter(([, entry]) => entry.hasInstallScript)
      .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
    assert.ok(withScripts.includes('usb'), 'the lock file lists install scripts');
    assert.deepEqual(
      withScripts.filter((name) => !(name in pkg.allowScripts)),
      [],
      'add these to allowScripts in package.json (true to run the script, false to skip it)',
    );
  });
});
