/**
 * `jiglet serve` and its TLS folder, run as a user would: the layout `jigctl certs init` writes
 * keeps the CA key apart; an agent refuses to start beside the CA's private key (unless a demo
 * says --allow-ca-key) and refuses a server key that others can read.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCerts } from '../../client/src/certs.js';
import { startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';

const JIGLET = join(import.meta.dirname, '../../dist/agent/src/main.js');

describe('the agent’s TLS folder', function () {
  this.timeout(30_000);
  let dir: string;
  let tls: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-tlsdir-'));
    tls = join(dir, 'tls');
    await initCerts({ dir: tls, hosts: ['localhost', '127.0.0.1'] });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs `jiglet serve` expecting it to exit; resolves with its exit code and stderr. */
  const serveFails = (tlsDir: string): Promise<{ code: number; stderr: string }> =>
    new Promise((resolve) => {
      const state = mkdtempSync(join(dir, 'state-'));
      const args = ['serve', '--tls-dir', tlsDir, '--state-dir', state, '--listen', '127.0.0.1:0'];
      execFile(process.execPath, [JIGLET, ...args], { timeout: 20_000 }, (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      );
    });

  it('writes the CA key apart from the three files a jig host needs', () => {
    assert.deepEqual(readdirSync(join(tls, 'jig')).sort(), ['ca.crt', 'server.crt', 'server.key']);
    assert.deepEqual(readdirSync(join(tls, 'ca')).sort(), ['ca.crt', 'ca.key']);
    assert.ok(!existsSync(join(tls, 'ca.key')), 'no second copy of the CA key');
  });

  it('points at jig/ when given the whole certs folder', async () => {
    const { code, stderr } = await serveFails(tls);
    assert.equal(code, 78);
    assert.match(stderr, /server\.crt.*pass --tls-dir .*\/tls\/jig/);
  });

  it("refuses to start beside the CA's private key, and says how to move it", async () => {
    const careless = join(dir, 'careless');
    cpSync(join(tls, 'jig'), careless, { recursive: true });
    // Under another name, too: the key is recognised by what it is, not what it is called.
    copyFileSync(join(tls, 'ca', 'ca.key'), join(careless, 'backup.pem'));
    const { code, stderr } = await serveFails(careless);
    assert.equal(code, 78);
    assert.match(stderr, /the CA's private key is on this jig host \(.*backup\.pem\)/);
    assert.match(stderr, /Move it off the host.*--allow-ca-key/);
  });

  it('starts with --allow-ca-key, and warns', async () => {
    const demo = join(dir, 'demo');
    cpSync(join(tls, 'jig'), demo, { recursive: true });
    copyFileSync(join(tls, 'ca', 'ca.key'), join(demo, 'ca.key'));
    const agent = await startJigletProcess({
      stateDir: mkdtempSync(join(dir, 'state-')),
      tlsDir: demo,
      logLevel: 'warn',
      extraArgs: ['--allow-ca-key'],
      stderr: 'capture',
    });
    try {
      assert.match(agent.stderr(), /serving beside the CA's private key \(--allow-ca-key\)/);
    } finally {
      await agent.stop();
    }
  });

  it('refuses a server key that other users can read', async () => {
    const open = join(dir, 'open');
    cpSync(join(tls, 'jig'), open, { recursive: true });
    chmodSync(join(open, 'server.key'), 0o644);
    const { code, stderr } = await serveFails(open);
    assert.equal(code, 78);
    assert.match(stderr, /server\.key is readable by other users \(mode 644\); run: chmod 600/);
  });
});
