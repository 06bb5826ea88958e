/** Where jigctl finds the agent and its certificate: flags, then JIGLET_* variables, then contexts. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConnection } from '../src/connection.js';

describe('connection settings', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-conn-'));
    writeFileSync(
      join(dir, 'config.yaml'),
      [
        'current-context: lab1',
        'contexts:',
        '  lab1: { server: "lab1:7411", ca: tls/ca.crt, cert: tls/a.crt, key: tls/a.key }',
        '  lab2: { server: "lab2:7411", ca: /abs/ca.crt, cert: /abs/b.crt, key: /abs/b.key }',
      ].join('\n'),
    );
    env = { JIGLET_CONFIG: join(dir, 'config.yaml') };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('uses the current context, with paths relative to the config file', () => {
    assert.deepEqual(resolveConnection({}, env), {
      server: 'lab1:7411',
      ca: join(dir, 'tls/ca.crt'),
      cert: join(dir, 'tls/a.crt'),
      key: join(dir, 'tls/a.key'),
    });
  });

  it('lets --context, then JIGLET_* variables, then flags override', () => {
    assert.equal(resolveConnection({ context: 'lab2' }, env).server, 'lab2:7411');
    assert.equal(resolveConnection({}, { ...env, JIGLET_CONTEXT: 'lab2' }).cert, '/abs/b.crt');
    assert.equal(resolveConnection({}, { ...env, JIGLET_ADDR: 'env:1' }).server, 'env:1');
    assert.equal(resolveConnection({ server: 'flag:2' }, { ...env, JIGLET_ADDR: 'env:1' }).server, 'flag:2');
    assert.equal(resolveConnection({ key: '/k' }, env).key, '/k');
  });

  it('names an unknown context and what is missing', () => {
    assert.throws(() => resolveConnection({ context: 'nope' }, env), /no context "nope"/);
    assert.throws(
      () => resolveConnection({}, { JIGLET_CONFIG: join(dir, 'absent.yaml'), JIGLET_CA: '/ca' }),
      /set --cert\/JIGLET_CERT, --key\/JIGLET_KEY/,
    );
    assert.throws(
      () => resolveConnection({}, { ...env, JIGLET_ADDR: '' }),
      /^JigletError: the agent's address is empty: give --server HOST:PORT or set JIGLET_ADDR$/,
    );
  });

  it("needs no certificate for an agent's local endpoint (unix:PATH, as inside a job)", () => {
    const inJob = {
      JIGLET_CONFIG: join(dir, 'absent.yaml'),
      JIGLET_ADDR: 'unix:/var/lib/jiglet/jiglet.sock',
    };
    assert.deepEqual(resolveConnection({}, inJob), {
      server: 'unix:/var/lib/jiglet/jiglet.sock',
      ca: '',
      cert: '',
      key: '',
    });
    assert.equal(resolveConnection({ server: 'unix:/s' }, { JIGLET_CONFIG: inJob.JIGLET_CONFIG }).cert, '');
  });
});
