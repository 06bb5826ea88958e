/**
 * Exec over SSH against a server whose answers to a short command arrive in one read: the reply
 * to the exec request, the exit status, end of file and close. Dropbear on a busy QEMU DUT did
 * this for about 1 exec in 20 (issue 15's benchmark), and the agent lost the exit status (exit
 * -1). The server here is ssh2's, behind a link that passes on what the server sent within
 * BATCH_MS in one piece, so the burst happens on every exec.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import { DutSsh } from '../src/jig/dut-ssh.js';
import { sshExec } from '../src/jig/ssh-exec.js';
import { HostKeyFile } from '../src/jig/ssh-host-key.js';

/**
 * How long the link gathers the server's bytes before passing them on. ssh2's server sends the
 * exit status some 25-100 ms after its reply to the exec request; a machine slower than that only
 * makes the test weaker (the burst is split), never wrong.
 */
const BATCH_MS = 150;
const EXECS = 5;

/** A TCP link to `port` that passes the server's bytes on in batches (the client's at once). */
async function batchingLink(port: number): Promise<Server> {
  const link = createServer((client: Socket) => {
    const upstream = createConnection(port, '127.0.0.1');
    client.pipe(upstream);
    let pending: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    upstream.on('data', (chunk: Buffer) => {
      pending.push(chunk);
      timer ??= setTimeout(() => {
        client.write(Buffer.concat(pending));
        pending = [];
        timer = undefined;
      }, BATCH_MS);
    });
    const closeBoth = (): void => {
      clearTimeout(timer);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', closeBoth);
      s.on('close', closeBoth);
    }
  });
  link.listen(0, '127.0.0.1');
  await once(link, 'listening');
  return link;
}

describe('exec over SSH, answered in one burst', () => {
  let dir: string;
  let server: ssh2.Server;
  let link: Server;
  let ssh: DutSsh;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-ssh-burst-'));
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
    const clientKey = ssh2.utils.generateKeyPairSync('ed25519');
    const keyFile = join(dir, 'id_ed25519');
    writeFileSync(keyFile, clientKey.private, { mode: 0o600 });
    server = new ssh2.Server({ hostKeys: [hostKey.private] }, (conn) => {
      conn.on('error', () => undefined);
      conn.on('authentication', (ctx) =>
        ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey']),
      );
      conn.on('session', (acceptSession) => {
        acceptSession().on('exec', (accept, _reject, info) => {
          // The exit code is the number the command names (`…; eval 'exit 7'`).
          const code = Number(/exit (\d+)/.exec(info.command)?.[1] ?? 0);
          const stream = accept();
          stream.exit(code);
          stream.end();
        });
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    link = await batchingLink((server.address() as { port: number }).port);
    const log = pino({ level: 'silent' });
    ssh = new DutSsh({
      dut: 'burst',
      config: {
        host: '127.0.0.1',
        port: (link.address() as { port: number }).port,
        user: 'root',
        keyFile,
        hostKey: 'pinned',
        connectTimeoutMs: 10_000,
      },
      hostKeys: new HostKeyFile(dir, 'burst', log),
      lastFlashedAt: () => 0,
      log,
      record: () => undefined,
    });
  });

  after(async () => {
    ssh.close();
    link.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the exit status that came with the reply to the exec', async () => {
    for (let i = 0; i < EXECS; i++) {
      const code = i === 0 ? 0 : 40 + i;
      const result = await sshExec(ssh, {
        command: `exit ${code}`,
        timeoutMs: 10_000,
        stdin: Buffer.alloc(0),
      });
      assert.equal(result.exitCode, code, `exec ${i}: exit ${code} came back as ${result.exitCode}`);
      assert.equal(result.timedOut, false);
    }
  });
});
