/**
 * The client library dialling the agent by IP address: no DEP0123 warning in the caller's program
 * (grpc-js would send the IP as the TLS server name), and the agent's certificate is still
 * checked against that IP address.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { initCerts } from '../src/certs.js';
import { JigletClient } from '../src/jiglet-client.js';

const run = promisify(execFile);

describe('the client dialling the agent by IP address', () => {
  let work: string;
  /** An agent whose certificate names 127.0.0.1, and one whose certificate names only localhost. */
  let byIp: JigletProcess;
  let byName: JigletProcess;
  const settings = (tls: string, server: string) => ({
    server,
    ca: join(tls, 'ca.crt'),
    cert: join(tls, 'operator.crt'),
    key: join(tls, 'operator.key'),
  });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'jiglet-servername-'));
    await initCerts({ dir: join(work, 'ip'), hosts: ['localhost', '127.0.0.1'] });
    await initCerts({ dir: join(work, 'name'), hosts: ['localhost'] });
    [byIp, byName] = await Promise.all([
      startJigletProcess({ stateDir: join(work, 'state-ip'), tlsDir: join(work, 'ip', 'jig') }),
      startJigletProcess({ stateDir: join(work, 'state-name'), tlsDir: join(work, 'name', 'jig') }),
    ]);
  });

  after(async () => {
    await Promise.all([byIp?.stop(), byName?.stop()]);
    rmSync(work, { recursive: true, force: true });
  });

  it('prints no TLS server-name warning in the program that uses it', async () => {
    // A fresh process: Node prints the warning once per process.
    const client = join(import.meta.dirname, '../../dist/client/src/jiglet-client.js');
    const script = [
      `const { JigletClient } = await import(${JSON.stringify(client)});`,
      `const c = new JigletClient(${JSON.stringify(settings(join(work, 'ip'), byIp.address))});`,
      'console.log((await c.list()).length);',
      'c.close();',
    ].join('\n');
    const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(stdout.trim(), '0');
    assert.doesNotMatch(stderr, /DEP0123|ServerName/);
  });

  it('still refuses an agent whose certificate does not name the IP address dialled', async () => {
    const port = byName.address.slice(byName.address.lastIndexOf(':') + 1);
    const wrong = new JigletClient(settings(join(work, 'name'), `127.0.0.1:${port}`));
    try {
      await assert.rejects(wrong.list(), (err: Error) => {
        assert.match(err.message, /IP: 127\.0\.0\.1 is not in the cert/);
        return true;
      });
    } finally {
      wrong.close();
    }
    const right = new JigletClient(settings(join(work, 'name'), `localhost:${port}`));
    try {
      assert.deepEqual(await right.list(), []);
    } finally {
      right.close();
    }
  });
});
