/**
 * Authentication and authorization over real mutual TLS: refused handshakes, every role against
 * every RPC, and ownership of jobs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { errorOf, writeAndEnd } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import type { JigletError } from '../../protocol/src/errors.js';

/** Runs openssl s_client against the agent; resolves with its exit code and output. */
function sClient(t: TestAgent, args: string[]): Promise<{ code: number; out: string }> {
  const [host, port] = t.address.split(':');
  const d = t.pki.dir;
  const child = spawn(
    'openssl',
    [
      's_client',
      '-connect',
      `${host}:${port}`,
      '-CAfile',
      join(d, 'ca.crt'),
      '-cert',
      join(d, 'admin.crt'),
      '-key',
      join(d, 'admin.key'),
      ...args,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  child.stderr.on('data', (b: Buffer) => (out += b));
  // s_client may end (a refused handshake) before it reads its stdin: that EPIPE is no failure.
  child.stdin.on('error', () => undefined);
  child.stdin.end('Q\n');
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, out })));
}

describe('authentication', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  it('accepts TLS 1.3 and refuses a TLS 1.2 client', async () => {
    const ok = await sClient(t, ['-tls1_3']);
    assert.match(ok.out, /Protocol\s*:\s*TLSv1\.3|New, TLSv1\.3/);
    const old = await sClient(t, ['-tls1_2']);
    assert.notEqual(old.code, 0);
    assert.match(
      old.out,
      /alert protocol version|no protocols available|wrong version|unsupported protocol/i,
    );
  });

  it('picks AES-128-GCM for a client that prefers AES-256-GCM, and still serves one that offers only that', async () => {
    // openssl's own order puts TLS_AES_256_GCM_SHA384 first; the agent's preference decides.
    const preferred = await sClient(t, ['-tls1_3']);
    assert.match(preferred.out, /Cipher is TLS_AES_128_GCM_SHA256/, preferred.out);
    const only256 = await sClient(t, ['-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384']);
    assert.match(only256.out, /Cipher is TLS_AES_256_GCM_SHA384/, only256.out);
  });

  it('refuses a client that presents no certificate', async () => {
    const old = await sClient(t, ['-tls1_3', '-cert', '/dev/null', '-key', '/dev/null']).catch(() => null);
    assert.ok(old);
    // And through gRPC: a channel without a client certificate never gets an answer.
    const { credentials } = await import('@grpc/grpc-js');
    const { JobServiceClient } = await import('../../protocol/gen/jiglet/v1/jobs.js');
    const { readFileSync } = await import('node:fs');
    const stub = new JobServiceClient(
      t.address,
      credentials.createSsl(readFileSync(join(t.pki.dir, 'ca.crt'))),
    );
    const err = await new Promise<Error | null>((resolve) =>
      stub.listJobs({ states: [], owner: '', dut: '', pageSize: 0, pageToken: '' }, (e) => resolve(e)),
    );
    stub.close();
    assert.ok(err, 'a call without a client certificate succeeded');
  });

  for (const who of ['stranger', 'expired'] as const) {
    it(`refuses a certificate that is ${who === 'stranger' ? 'from another CA' : 'expired'}`, async () => {
      const c = new JigletClient(t.pki.as(who, t.address));
      try {
        const err = await errorOf(c.list());
        assert.equal(err.code, 'JIGLET_E_UNAVAILABLE');
      } finally {
        c.close();
      }
    });
  }

  it('refuses certificates with no role or with two roles', async () => {
    for (const who of ['norole', 'tworoles']) {
      const err = await errorOf(t.client(who).list());
      assert.equal(err.code, 'JIGLET_E_PERMISSION_DENIED', who);
      assert.match(err.message, /role|OU/i);
    }
  });
});

describe('authorization', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  /** Each RPC, called in a way that reaches the handler; resolves with the error code or 'OK'. */
  const rpcs: Record<string, (c: JigletClient, jobId: string) => Promise<unknown>> = {
    StartJob: (c) => c.start({ command: 'true' }),
    StopJob: (c, id) => c.stop(id, 100),
    GetJob: (c, id) => c.get(id),
    ListJobs: (c) => c.list(),
    StreamOutput: async (c, id) => {
      for await (const _ of c.output(id)) {
        // drain
      }
    },
    WriteStdin: (c, id) => c.stdin(id).end(),
  };
  const allowed: Record<string, string[]> = {
    viewer: ['GetJob', 'ListJobs', 'StreamOutput'],
    operator: Object.keys(rpcs),
    admin: Object.keys(rpcs),
  };

  for (const role of ['viewer', 'operator', 'admin']) {
    for (const rpc of Object.keys(rpcs)) {
      const expectAllowed = allowed[role]!.includes(rpc);
      it(`${role} ${expectAllowed ? 'may' : 'may not'} call ${rpc}`, async () => {
        // A job of the caller's own (or the operator's, for the viewer) with stdin open.
        const owner = role === 'viewer' ? t.client('operator') : t.client(role);
        const job = await owner.start({ command: 'cat', stdin: true });
        let code = 'OK';
        try {
          await rpcs[rpc]!(t.client(role), job.id);
        } catch (err) {
          code = (err as JigletError).code;
        }
        if (expectAllowed) assert.notEqual(code, 'JIGLET_E_PERMISSION_DENIED');
        else assert.equal(code, 'JIGLET_E_PERMISSION_DENIED');
        await owner.stop(job.id, 100).catch(() => undefined);
      });
    }
  }

  it("an operator cannot stop or write to another operator's job; an admin can", async () => {
    const alice = t.client('operator');
    const bob = t.client('operator2');
    const job = await alice.start({ command: 'cat', stdin: true });
    const stopErr = await errorOf(bob.stop(job.id, 100));
    assert.equal(stopErr.code, 'JIGLET_E_PERMISSION_DENIED');
    assert.match(stopErr.message, /belongs to operator/);
    const writeErr = await errorOf(writeAndEnd(bob, job.id));
    assert.equal(writeErr.code, 'JIGLET_E_PERMISSION_DENIED');
    // Still running and untouched.
    assert.equal((await alice.get(job.id)).pid > 0, true);
    const admin = t.client('admin');
    const w = admin.stdin(job.id);
    await w.write('from admin\n');
    assert.equal(await w.close(), 11);
    // Closing stdin ends `cat`; its output proves the admin's bytes reached the job.
    const got = await collect(admin, job.id, { follow: true });
    assert.equal(got.all.toString(), 'from admin\n');
    assert.equal(got.finished?.exitCode, 0);
  });

  it('hides environment values from callers other than the owner and admins', async () => {
    const op = t.client('operator');
    const job = await op.start({ command: 'true', env: { TOKEN: 's3cret' } });
    assert.equal((await op.get(job.id)).spec?.env.TOKEN, 's3cret');
    assert.equal((await t.client('viewer').get(job.id)).spec?.env.TOKEN, '(redacted)');
    assert.equal((await t.client('admin').get(job.id)).spec?.env.TOKEN, 's3cret');
  });
});
