/**
 * fixtures/jigs/qemu.yaml: its DUT passes the jig description checks with the `qemu` drivers, and
 * the service starts qemu-host on exactly the socket, UART link and disk the DUT is described with.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { parseJigDescription } from '../../src/jig-description.js';
import { builtinPowerRegistry } from '../../src/power-registry.js';
import { qemuPowerDriver, qemuStorageMuxDriver } from '../../src/qemu/index.js';
import { builtinStorageMuxRegistry } from '../../src/storage-mux-registry.js';

const JIG = path.resolve(import.meta.dirname, '../../../fixtures/jigs/qemu.yaml');

interface JigFile {
  services: { name: string; command: string; args: string[] }[];
  duts: unknown[];
}

/** The value after `--flag` in a shell command line of plain or single-quoted words. */
function flag(commandLine: string, name: string): string | undefined {
  const words = commandLine.split(/\s+/);
  const at = words.indexOf(`--${name}`);
  return at < 0 ? undefined : words[at + 1]?.replace(/^'(.*)'$/, '$1');
}

describe('fixtures/jigs/qemu.yaml', () => {
  it('describes qdut-1 with qemu power, serial and storage that match its qemu-host service', async () => {
    // The agent expands its placeholders (${stateDir}, ${tmpDir}) before it parses a description;
    // any absolute folders do here, since what matters is that service and DUT name the same paths.
    const folders: Record<string, string> = {
      stateDir: '/var/lib/jiglet',
      tmpDir: '/srv/scratch',
      configDir: path.dirname(JIG),
    };
    // ${port:NAME} is a free port the agent takes at start: any one does here.
    const text = (await readFile(JIG, 'utf8'))
      .replace(/\$\{(stateDir|tmpDir|configDir)\}/g, (_, name: string) => folders[name]!)
      .replace(/(port: )\$\{port:qdut-1-ssh\}/, '$140022');
    const file = parse(text) as JigFile;
    const power = builtinPowerRegistry();
    const mux = builtinStorageMuxRegistry();
    // Once jig-drivers registers the qemu drivers itself, adding them again would throw.
    if (!power.names().includes('qemu')) power.register(qemuPowerDriver);
    if (!mux.names().includes('qemu')) mux.register(qemuStorageMuxDriver);
    const jig = parseJigDescription(stringify({ duts: file.duts }), JIG, power, mux);

    const dut = jig.duts.find((d) => d.name === 'qdut-1');
    assert.ok(dut, 'qdut-1 is described');
    const service = file.services.find((s) => s.name === 'qdut-1');
    assert.ok(service, 'qdut-1 has a service');
    const commandLine = service.args.join(' ');
    assert.match(commandLine, /jig-driver\.js qemu-host /);
    assert.equal(flag(commandLine, 'name'), 'qdut-1');
    assert.equal(dut.power?.driver, 'qemu');
    assert.equal(dut.power?.socket, flag(commandLine, 'control'));
    assert.equal(dut.storage?.mux.driver, 'qemu');
    assert.equal(dut.storage?.mux.socket, flag(commandLine, 'control'));
    assert.equal(dut.storage?.device.path, flag(commandLine, 'disk'));
    assert.equal(dut.serial?.path, flag(commandLine, 'uart'));
    assert.equal(dut.safeState.power, 'off');
    // The DUT's SSH server is forwarded from a free loopback port the agent picks at start.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the agent's placeholder, as the YAML has it
    assert.equal(flag(commandLine, 'ssh-port'), '${port:qdut-1-ssh}');
    // ...and the DUT's ssh: section names that same port, with the key build-image.sh makes.
    assert.equal(dut.ssh?.port, 40022);
    assert.equal(dut.ssh?.keyFile, '/srv/scratch/jiglet-qemu-jig/image/ssh/id_ed25519');
    assert.equal(dut.ssh?.hostKey, 'relearn-after-flash');
    assert.match(
      await readFile(JIG, 'utf8'),
      /ssh:\n\s+host: 127\.0\.0\.1\n\s+port: \$\{port:qdut-1-ssh\}\n/,
    );
  });
});
