/**
 * Bad input that used to hurt the agent or say too much (issue 11 §5), over real gRPC and mutual
 * TLS: a cwd that is a file or missing, a DUT that is not on the jig, a CA certificate as a
 * client identity, a claim wait past Node's timer limit, a 100 KB health service name, and
 * NOT_FOUND messages that named the config file's path.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import * as x509 from '@peculiar/x509';
import { protoPath as healthProto } from 'grpc-health-check';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { watchedServiceNames } from '../src/rpc/health-service.js';

x509.cryptoProvider.set(webcrypto);

/** Where the config would live on a real host; no message to a client may contain it. */
const CONFIG_PATH = '/etc/jiglet/private-lab-7.yaml';

/** A certificate signed by the agent's CA, with a valid CN and role, that is itself a CA. */
async function issueCaClientCert(pkiDir: string, name: string): Promise<void> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const caCert = new x509.X509Certificate(readFileSync(join(pkiDir, 'ca.crt'), 'utf8'));
  const caKeyDer = Buffer.from(
    readFileSync(join(pkiDir, 'ca', 'ca.key'), 'utf8').replace(/-----[^-]+-----|\s/g, ''),
    'base64',
  );
  const caKey = await webcrypto.subtle.importKey('pkcs8', caKeyDer, alg, false, ['sign']);
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${name}, O=jiglet, OU=operator`,
    issuer: caCert.subjectName,
    publicKey: keys.publicKey,
    signingKey: caKey,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 86400_000),
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  writeFileSync(join(pkiDir, `${name}.crt`), cert.toString('pem'));
  writeFileSync(
    join(pkiDir, `${name}.key`),
    `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`,
    { mode: 0o600 },
  );
}

/** Child dirs of this agent's cgroup namespace in every hierarchy: one per live job cgroup. */
function jobCgroups(stateDir: string): string[] {
  const namespace = `jiglet-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`;
  const found: string[] = [];
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const dir = join('/sys/fs/cgroup', hierarchy, namespace);
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true }))
      if (entry.isDirectory()) found.push(join(dir, entry.name));
  }
  return found;
}

describe('crash paths: bad input', function () {
  this.timeout(30_000);
  let t: TestAgent;
  before(async () => {
    const jig = parseJigDescription(
      JSON.stringify({
        duts: [
          { name: 'bench-a', power: { driver: 'command', on: 'true', off: 'true' } },
          { name: 'bench-b', power: { driver: 'command', on: 'true', off: 'true' } },
        ],
      }),
      CONFIG_PATH,
    );
    t = await startTestAgent({ jig });
  });
  after(async () => {
    // Still serving after all of it.
    const op = t.client('operator');
    const job = await op.start({ command: 'echo', args: ['still here'] });
    assert.equal((await collect(op, job.id, { follow: true })).all.toString(), 'still here\n');
    await t.stop();
  });

  it('refuses a cwd that is a file or missing, and leaves no job, record or cgroup behind', async () => {
    const op = t.client('operator');
    const before = (await op.list()).length;
    const recordDirs = readdirSync(join(t.stateDir, 'jobs')).length;
    const file = join(t.stateDir, 'not-a-dir');
    writeFileSync(file, 'x');
    const notDir = await errorOf(op.start({ command: 'true', cwd: file }));
    assert.equal(notDir.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.equal(notDir.message, `working directory ${file} is not a directory on the jig host`);
    const missing = await errorOf(op.start({ command: 'true', cwd: '/nonexistent/build-42' }));
    assert.equal(missing.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.equal(missing.message, 'working directory /nonexistent/build-42 does not exist on the jig host');
    assert.doesNotMatch(missing.message, /ENOENT|\/bin\/sh/);
    assert.equal((await op.list()).length, before);
    assert.equal(readdirSync(join(t.stateDir, 'jobs')).length, recordDirs);
    assert.deepEqual(jobCgroups(t.stateDir), []);
  });

  it('refuses a job for a DUT that is not on the jig, naming the DUTs there are', async () => {
    const op = t.client('operator');
    const err = await errorOf(op.start({ command: 'true', dut: 'bench-z' }));
    assert.equal(err.code, 'JIGLET_E_NOT_FOUND');
    assert.equal(err.message, 'no DUT "bench-z" on this jig (there are: bench-a, bench-b)');
    assert.equal(existsSync(join(t.stateDir, 'records', 'bench-z.jsonl')), false);
    // A DUT that is there still takes jobs.
    const job = await op.start({ command: 'true', dut: 'bench-a' });
    assert.equal((await collect(op, job.id, { follow: true })).finished?.exitCode, 0);
  });

  it('never names the config file in what it tells clients', async () => {
    const viewer = t.client('viewer');
    for (const err of [
      await errorOf(viewer.jig.power('bench-z', 'status')),
      await errorOf(viewer.jig.expect('bench-z', 'login:')),
      await errorOf(t.client('operator').start({ command: 'true', dut: 'bench-z' })),
    ]) {
      assert.equal(err.code, 'JIGLET_E_NOT_FOUND');
      assert.doesNotMatch(err.message, /private-lab-7|\/etc\/jiglet/);
    }
  });

  it('refuses a client certificate that is itself a CA', async () => {
    await issueCaClientCert(t.pki.dir, 'sub-ca');
    const client = new JigletClient(t.pki.as('sub-ca', t.address));
    try {
      const err = await errorOf(client.list());
      assert.equal(err.code, 'JIGLET_E_UNAUTHENTICATED');
      assert.match(
        err.message,
        /"sub-ca" is a CA certificate \(CA:TRUE\); a client needs a leaf certificate/,
      );
    } finally {
      client.close();
    }
  });

  it('refuses a claim wait past the timer limit instead of failing it at once', async () => {
    const holder = t.client('operator');
    const other = t.client('operator2');
    const held = await holder.leases.claim({ dut: 'bench-a', ttlMs: 60_000 });
    const err = await errorOf(other.leases.claim({ dut: 'bench-a', ttlMs: 60_000, waitMs: 2 ** 31 + 1 }));
    assert.equal(err.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.match(err.message, /^the claim wait must be between 0s and 168h; got 2147483649ms$/);
    // The longest allowed wait really waits: it is served when the holder lets go.
    const waiting = other.leases.claim({ dut: 'bench-a', ttlMs: 60_000, waitMs: 7 * 24 * 3600 * 1000 });
    let settled = false;
    void waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await t.client('viewer').leases.list(); // a round trip: a claim that failed at once has settled by now
    assert.equal(settled, false);
    await holder.leases.release(held.id);
    const granted = await waiting;
    assert.equal(granted.dut, 'bench-a');
    await other.leases.release(granted.id);
  });

  it('answers a 100 KB health service name without echoing it', async () => {
    const pkg = loadPackageDefinition(loadSync(healthProto, { keepCase: true }));
    const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
    const s = t.pki.as('viewer', t.address);
    const client = new (Health.Health as ServiceClientConstructor)(
      t.address,
      credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert)),
    );
    try {
      const err = await new Promise<ServiceError>((resolve, reject) =>
        client.Check!({ service: 'x'.repeat(100 * 1024) }, (e: ServiceError | null) =>
          e ? resolve(e) : reject(new Error('a 100 KB service name was answered')),
        ),
      );
      assert.equal(err.code, 3); // INVALID_ARGUMENT
      assert.ok(err.details.length < 300, `a ${err.details.length}-character answer`);
      assert.match(err.details, /at most 200 characters; got 102400/);
    } finally {
      client.close();
    }
  });

  it('keeps nothing per service name once a health Watch ends', async () => {
    const pkg = loadPackageDefinition(loadSync(healthProto, { keepCase: true, enums: String }));
    const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
    const s = t.pki.as('viewer', t.address);
    const client = new (Health.Health as ServiceClientConstructor)(
      t.address,
      credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert)),
    );
    const health = t.agent.grpc.health;
    const before = watchedServiceNames(health);
    try {
      const calls = [];
      for (let i = 0; i < 200; i++) {
        const call = client.Watch!({ service: `no-such-service-${i}` });
        call.on('error', () => undefined);
        const [first] = (await once(call, 'data')) as [{ status: string }];
        assert.equal(first.status, 'SERVICE_UNKNOWN');
        calls.push(call);
      }
      assert.ok(
        watchedServiceNames(health) >= before + 200,
        'the watches are registered (the check can fail)',
      );
      for (const call of calls) call.cancel();
      await waitUntil(
        'every watched name to be forgotten',
        () => watchedServiceNames(health) === before,
        10_000,
      );
    } finally {
      client.close();
    }
  });
});
