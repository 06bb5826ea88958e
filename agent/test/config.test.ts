/** `jiglet serve` settings: defaults, then the config file, then flags; mistakes name the key. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LISTEN, loadAgentConfig } from '../src/config.js';

describe('agent config', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('falls back to defaults without a file', () => {
    const c = loadAgentConfig({});
    assert.equal(c.listen, DEFAULT_LISTEN);
    assert.equal(c.stateDir, '/var/lib/jiglet');
  });

  it('reads the file, resolves its paths against it, and lets flags win', () => {
    const file = join(dir, 'jig.yaml');
    writeFileSync(
      file,
      'listen: 0.0.0.0:7000\nstateDir: state\ntlsDir: /etc/x\nleaseMaxLifetimeMs: 86400000\nduts: []\n',
    );
    const c = loadAgentConfig({ config: file });
    assert.equal(c.leaseMaxLifetimeMs, 86_400_000);
    assert.equal(c.listen, '0.0.0.0:7000');
    assert.equal(c.stateDir, join(dir, 'state'));
    assert.equal(c.tlsDir, '/etc/x');
    assert.deepEqual(c.jig?.duts, []);
    assert.equal(loadAgentConfig({ config: file, listen: '127.0.0.1:1' }).listen, '127.0.0.1:1');
  });

  it("resolves a DUT shell's passwordFile against the config file", () => {
    const file = join(dir, 'shell.yaml');
    writeFileSync(
      file,
      'duts:\n  - name: a\n    shell: { passwordFile: secrets/a.pw }\n  - name: b\n    shell: { passwordFile: /etc/b.pw }\n',
    );
    const duts = loadAgentConfig({ config: file }).jig?.duts ?? [];
    assert.deepEqual(
      duts.map((d) => d.shell.passwordFile),
      [join(dir, 'secrets/a.pw'), '/etc/b.pw'],
    );
  });

  it('reports bad YAML, unknown keys and bad values with the file and key', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listen: nowhere\nstateDirr: x\n');
    assert.throws(
      () => loadAgentConfig({ config: bad }),
      (err: Error) => {
        assert.match(err.message, /bad\.yaml: listen: .*HOST:PORT/);
        assert.match(err.message, /stateDirr/);
        return true;
      },
    );
    writeFileSync(bad, 'listen: [unclosed\n');
    assert.throws(() => loadAgentConfig({ config: bad }), /not valid YAML/);
    assert.throws(() => loadAgentConfig({ config: join(dir, 'missing.yaml') }), /cannot read config file/);
  });

  it('validates the jig description in it before anything starts, naming the key path', () => {
    const sample = loadAgentConfig({ config: join(import.meta.dirname, '../../fixtures/jigs/lab1.yaml') });
    assert.ok((sample.jig?.duts.length ?? 0) > 0);
    const bad = join(dir, 'bad-jig.yaml');
    writeFileSync(bad, 'duts:\n  - name: rpi4-a\n    power: { driver: tasmota, url: not-a-url }\n');
    assert.throws(() => loadAgentConfig({ config: bad }), /bad-jig\.yaml: duts\[0\]\.power\.url/);
  });

  it("reads how users' jobs run, and refuses root or an empty range", () => {
    const file = join(dir, 'users.yaml');
    writeFileSync(file, 'jobUsers: { mode: per-owner, uidRange: [70000, 70100] }\n');
    assert.deepEqual(loadAgentConfig({ config: file }).jobUsers, {
      mode: 'per-owner',
      first: 70000,
      last: 70100,
    });
    writeFileSync(file, 'jobUsers: { mode: single, uid: 65534, gid: 65534 }\n');
    assert.deepEqual(loadAgentConfig({ config: file }).jobUsers, { mode: 'single', uid: 65534, gid: 65534 });
    writeFileSync(file, 'jobUsers: { mode: single, uid: 0, gid: 0 }\n');
    assert.throws(() => loadAgentConfig({ config: file }), /jobUsers\.uid: expected a uid other than 0/);
    writeFileSync(file, 'jobUsers: { mode: per-owner, uidRange: [70100, 70000] }\n');
    assert.throws(() => loadAgentConfig({ config: file }), /jobUsers\.uidRange: expected \[first, last\]/);
  });
});
