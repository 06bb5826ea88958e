/** `jiglet serve` settings: defaults, then the config file, then flags; mistakes name the key. */
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the config file's placeholders are written ${name}
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LISTEN, loadAgentConfig } from '../src/config.js';

describe('agent config', async () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('falls back to defaults without a file', async () => {
    const c = await loadAgentConfig({});
    assert.equal(c.listen, DEFAULT_LISTEN);
    assert.equal(c.stateDir, '/var/lib/jiglet');
  });

  it('reads the file, resolves its paths against it, and lets flags win', async () => {
    const file = join(dir, 'jig.yaml');
    writeFileSync(
      file,
      'listen: 0.0.0.0:7000\nstateDir: state\ntlsDir: /etc/x\nleaseMaxLifetimeMs: 86400000\nduts: []\n',
    );
    const c = await loadAgentConfig({ config: file });
    assert.equal(c.leaseMaxLifetimeMs, 86_400_000);
    assert.equal(c.listen, '0.0.0.0:7000');
    assert.equal(c.stateDir, join(dir, 'state'));
    assert.equal(c.tlsDir, '/etc/x');
    assert.deepEqual(c.jig?.duts, []);
    assert.equal((await loadAgentConfig({ config: file, listen: '127.0.0.1:1' })).listen, '127.0.0.1:1');
  });

  it("resolves a DUT shell's passwordFile against the config file", async () => {
    const file = join(dir, 'shell.yaml');
    writeFileSync(
      file,
      'duts:\n  - name: a\n    shell: { passwordFile: secrets/a.pw }\n  - name: b\n    shell: { passwordFile: /etc/b.pw }\n',
    );
    const duts = (await loadAgentConfig({ config: file })).jig?.duts ?? [];
    assert.deepEqual(
      duts.map((d) => d.shell.passwordFile),
      [join(dir, 'secrets/a.pw'), '/etc/b.pw'],
    );
  });

  it('reports bad YAML, unknown keys and bad values with the file and key', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listen: nowhere\nstateDirr: x\n');
    await assert.rejects(
      () => loadAgentConfig({ config: bad }),
      (err: Error) => {
        assert.match(err.message, /bad\.yaml: listen: .*HOST:PORT/);
        assert.match(err.message, /stateDirr/);
        return true;
      },
    );
    writeFileSync(bad, 'listen: [unclosed\n');
    await assert.rejects(() => loadAgentConfig({ config: bad }), /not valid YAML/);
    await assert.rejects(
      () => loadAgentConfig({ config: join(dir, 'missing.yaml') }),
      /cannot read config file/,
    );
  });

  it('validates the jig description in it before anything starts, naming the key path', async () => {
    const sample = await loadAgentConfig({
      config: join(import.meta.dirname, '../../fixtures/jigs/lab1.yaml'),
    });
    assert.ok((sample.jig?.duts.length ?? 0) > 0);
    const bad = join(dir, 'bad-jig.yaml');
    writeFileSync(bad, 'duts:\n  - name: rpi4-a\n    power: { driver: tasmota, url: not-a-url }\n');
    await assert.rejects(() => loadAgentConfig({ config: bad }), /bad-jig\.yaml: duts\[0\]\.power\.url/);
  });

  it("reads how users' jobs run, and refuses root or an empty range", async () => {
    const file = join(dir, 'users.yaml');
    writeFileSync(file, 'jobUsers: { mode: per-owner, uidRange: [70000, 70100] }\n');
    assert.deepEqual((await loadAgentConfig({ config: file })).jobUsers, {
      mode: 'per-owner',
      first: 70000,
      last: 70100,
    });
    writeFileSync(file, 'jobUsers: { mode: single, uid: 65534, gid: 65534 }\n');
    assert.deepEqual((await loadAgentConfig({ config: file })).jobUsers, {
      mode: 'single',
      uid: 65534,
      gid: 65534,
    });
    writeFileSync(file, 'jobUsers: { mode: single, uid: 0, gid: 0 }\n');
    await assert.rejects(
      () => loadAgentConfig({ config: file }),
      /jobUsers\.uid: expected a uid other than 0/,
    );
    writeFileSync(file, 'jobUsers: { mode: per-owner, uidRange: [70100, 70000] }\n');
    await assert.rejects(
      () => loadAgentConfig({ config: file }),
      /jobUsers\.uidRange: expected \[first, last\]/,
    );
  });

  it('expands ${stateDir}, ${configDir}, ${tmpDir} and ${port:NAME} (one free port per name)', async () => {
    const file = join(dir, 'placeholders.yaml');
    writeFileSync(
      file,
      [
        'stateDir: ${configDir}/st',
        'services:',
        '  - name: a',
        '    command: x',
        '    args: [--listen, "127.0.0.1:${port:a-power}", --uart, "${stateDir}/a-uart", "${HOME}"]',
        '    env: { CACHE: "${tmpDir}/cache" }',
        'duts:',
        '  - name: a',
        '    power: { driver: virtual, url: "http://127.0.0.1:${port:a-power}" }',
        '    serial: { path: "${stateDir}/a-uart" }',
        '  - name: b',
        '    power: { driver: virtual, url: "http://127.0.0.1:${port:b-power}" }',
        '',
      ].join('\n'),
    );
    const c = await loadAgentConfig({ config: file });
    assert.equal(c.stateDir, join(dir, 'st'));
    const [, listen, , uart, home] = c.services[0]!.args;
    assert.equal(uart, join(dir, 'st', 'a-uart'));
    assert.equal(home, '${HOME}', 'a placeholder it does not know is left to the shell');
    assert.equal(c.services[0]!.env.CACHE, join(tmpdir(), 'cache'));
    const port = Number(listen!.split(':')[1]);
    assert.ok(port > 0);
    const [a, b] = c.jig!.duts;
    assert.equal(a!.power?.driver === 'virtual' && a!.power.url, `http://127.0.0.1:${port}`);
    assert.notEqual(b!.power?.driver === 'virtual' && b!.power.url, `http://127.0.0.1:${port}`);
    assert.equal(a!.serial?.path, uart);
    // --state-dir moves everything that derives from it.
    const moved = await loadAgentConfig({ config: file, stateDir: join(dir, 'other') });
    assert.equal(moved.stateDir, join(dir, 'other'));
    assert.equal(moved.services[0]!.args[3], join(dir, 'other', 'a-uart'));
  });

  it('refuses a misspelt or misplaced placeholder, naming the key', async () => {
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, 'services:\n  - { name: a, command: x, args: ["${statedir}/u", "${port}"] }\n');
    await assert.rejects(
      () => loadAgentConfig({ config: file }),
      (err: Error) => {
        assert.match(
          err.message,
          /typo\.yaml: services\[0\]\.args\[0\]: \$\{statedir\}: .*did you mean \$\{stateDir\}/,
        );
        assert.match(err.message, /services\[0\]\.args\[1\]: \$\{port\}: expected \$\{port:NAME\}/);
        return true;
      },
    );
    writeFileSync(file, 'stateDir: ${stateDir}/x\n');
    await assert.rejects(
      () => loadAgentConfig({ config: file }),
      /stateDir: \$\{stateDir\} cannot be used here/,
    );
  });

  it('moves every path of the built-in virtual jig into the state directory it is given', async () => {
    const virtual = join(import.meta.dirname, '../../fixtures/jigs/virtual.yaml');
    const one = await loadAgentConfig({ config: virtual, stateDir: join(dir, 's1') });
    const two = await loadAgentConfig({ config: virtual, stateDir: join(dir, 's2') });
    const text = (c: typeof one) => JSON.stringify({ services: c.services, duts: c.jig?.duts });
    const own = text(one).replaceAll(join(dir, 's1'), 'S1');
    assert.doesNotMatch(own, /\/tmp\/|\$\{/, 'no fixed folder, no placeholder left');
    assert.match(own, /"S1\/vdut-a-uart"/);
    const urls = (c: typeof one) =>
      c.jig!.duts.map((d) => (d.power?.driver === 'virtual' ? d.power.url : ''));
    assert.equal(new Set([...urls(one), ...urls(two)]).size, 4, 'each agent picks its own ports');
  });
});
