/**
 * The agent's SSH connection to a DUT turns Nagle off. SFTP and exec are request and reply; with
 * Nagle on, the last segment of each request waited for the DUT's delayed ACK (40 ms), and
 * `jigctl cp` ran at a twentieth of scp's speed (README, Benchmarks, SSH). ssh2 leaves it on and
 * Node cannot read the socket option back, so the test watches the call ssh2 forwards to it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import { DutSsh } from '../src/jig/dut-ssh.js';
import { sshExec } from '../src/jig/ssh-exec.js';
import { HostKeyFile } from '../src/jig/ssh-host-key.js';

describe('SSH to a DUT without Nagle', () => {
  let dir: string;
  let server: ssh2.Server;
  const original = ssh2.Client.prototype.setNoDelay;
  const calls: boolean[] = [];

  before(async () => {
    ssh2.Client.prototype.setNoDelay = function (this: ssh2.Client, noDelay?: boolean) {
      calls.push(noDelay === true);
      return original.call(this, noDelay);
    };
    dir = mkdtempSync(join(tmpdir(), 'jiglet-ssh-nodelay-'));
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
    server = new ssh2.Server({ hostKeys: [hostKey.private] }, (conn) => {
      conn.on('error', () => undefined);
      conn.on('authentication', (ctx) =>
        ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey']),
      );
      conn.on('session', (acceptSession) => {
        acceptSession().on('exec', (accept) => {
          const stream = accept();
          stream.exit(0);
          stream.end();
        });
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  after(async () => {
    ssh2.Client.prototype.setNoDelay = original;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks for TCP_NODELAY on the connection it opens', async () => {
    const clientKey = ssh2.utils.generateKeyPairSync('ed25519');
    const keyFile = join(dir, 'id_ed25519');
    writeFileSync(keyFile, clientKey.private, { mode: 0o600 });
    const log = pino({ level: 'silent' });
    const ssh = new DutSsh({
      dut: 'nodelay',
      config: {
        host: '127.0.0.1',
        port: (server.address() as { port: number }).port,
        user: 'root',
        keyFile,
        hostKey: 'pinned',
        connectTimeoutMs: 10_000,
      },
      hostKeys: new HostKeyFile(dir, 'nodelay', log),
      lastFlashedAt: () => 0,
      log,
      record: () => undefined,
    });
    try {
      const result = await sshExec(ssh, { command: 'true', timeoutMs: 10_000, stdin: Buffer.alloc(0) });
      assert.equal(result.exitCode, 0);
      assert.deepEqual(calls, [true], 'the connection kept Nagle on');
    } finally {
      ssh.close();
    }
  });
});
