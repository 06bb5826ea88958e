/**
 * The dev PKI is judged by the tools that will consume it: OpenSSL's own parser and verifier, and
 * Node's TLS stack in a real handshake, rather than by re-reading the certificates with the library
 * that wrote them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { initCerts, issueClientCert, ROLES } from '../src/certs.js';

const run = promisify(execFile);
const DAY_MS = 24 * 60 * 60 * 1000;
const HOSTS = ['localhost', '127.0.0.1', '::1'];
const KEY_FILES = ['ca/ca.key', 'jig/server.key', 'admin.key', 'operator.key', 'viewer.key'];

/** Where `certs init` puts a name's files: the CA in ca/, the agent's in jig/, clients' at the top. */
function fileOf(dir: string, name: string, ext: 'crt' | 'key'): string {
  const sub = name === 'ca' && ext === 'key' ? 'ca' : name === 'server' ? 'jig' : '';
  return join(dir, sub, `${name}.${ext}`);
}

async function openssl(...args: string[]): Promise<string> {
  return (await run('openssl', args)).stdout;
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error & { code?: string }) => {
    assert.equal(err.code, code);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

describe('dev PKI (client/src/certs.ts)', () => {
  let root: string;
  let dir: string;
  let written: string[];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'jiglet-certs-'));
    dir = join(root, 'pki');
    written = await initCerts({ dir, hosts: HOSTS });
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes the CA in ca/, the agent’s three files in jig/, the clients’ at the top, and reports every file', async () => {
    const expected = [
      'ca/ca.crt',
      'ca/ca.key',
      'jig/ca.crt',
      'jig/server.crt',
      'jig/server.key',
      'ca.crt',
      ...ROLES.flatMap((n) => [`${n}.crt`, `${n}.key`]),
    ].map((f) => join(dir, f));
    assert.deepEqual([...written].sort(), [...expected].sort());
    assert.deepEqual(
      (await readdir(dir)).sort(),
      ['ca', 'jig', 'ca.crt', ...ROLES.flatMap((n) => [`${n}.crt`, `${n}.key`])].sort(),
    );
    assert.deepEqual((await readdir(join(dir, 'jig'))).sort(), ['ca.crt', 'server.crt', 'server.key']);
    assert.equal((await mode(join(dir, 'ca'))).toString(8), '700');
  });

  it('writes private keys as PKCS#8 PEM with mode 0600, certificates readable', async () => {
    for (const file of KEY_FILES) {
      const path = join(dir, file);
      assert.equal((await mode(path)).toString(8), '600', file);
      assert.match(await readFile(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/, file);
    }
    assert.equal((await mode(join(dir, 'ca.crt'))).toString(8), '644');
  });

  it('makes a P-256 CA that OpenSSL sees as a critical CA:TRUE with keyCertSign and cRLSign', async () => {
    const text = await openssl('x509', '-noout', '-text', '-in', join(dir, 'ca.crt'));
    assert.match(text, /NIST CURVE: P-256/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    const ca = new X509Certificate(await readFile(join(dir, 'ca.crt')));
    assert.ok(Date.parse(ca.validTo) - Date.now() > 3649 * DAY_MS, 'CA lives ten years');
  });

  it('makes a server certificate for jiglet-agent with DNS and IP SANs and serverAuth only', async () => {
    const text = await openssl('x509', '-noout', '-text', '-in', fileOf(dir, 'server', 'crt'));
    assert.match(text, /Subject: CN = jiglet-agent, O = jiglet\n/);
    assert.match(text, /NIST CURVE: P-256/);
    assert.match(text, /DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n/);
    assert.match(text, /Extended Key Usage: \n\s+TLS Web Server Authentication\n/);
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    const ca = join(dir, 'ca.crt');
    await openssl('verify', '-CAfile', ca, '-purpose', 'sslserver', fileOf(dir, 'server', 'crt'));
    await assert.rejects(
      openssl('verify', '-CAfile', ca, '-purpose', 'sslclient', fileOf(dir, 'server', 'crt')),
    );
  });

  it('makes role certificates with the role as the single OU, clientAuth and digitalSignature', async () => {
    for (const role of ROLES) {
      const crt = join(dir, `${role}.crt`);
      const text = await openssl('x509', '-noout', '-text', '-in', crt);
      assert.match(text, new RegExp(`Subject: CN = ${role}, O = jiglet, OU = ${role}\\n`));
      assert.equal(text.match(/OU = /g)?.length, 1, 'exactly one OU');
      assert.match(text, /NIST CURVE: P-256/);
      assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
      assert.match(text, /Extended Key Usage: \n\s+TLS Web Client Authentication\n/);
      assert.doesNotMatch(text, /Subject Alternative Name/);
      await openssl('verify', '-CAfile', join(dir, 'ca.crt'), '-purpose', 'sslclient', crt);
    }
  });

  it('pairs every key with its certificate', async () => {
    for (const name of ['ca', 'server', ...ROLES]) {
      const fromCert = await openssl('x509', '-noout', '-pubkey', '-in', fileOf(dir, name, 'crt'));
      const fromKey = await openssl('pkey', '-pubout', '-in', fileOf(dir, name, 'key'));
      assert.equal(fromCert, fromKey, name);
    }
  });

  it('backdates notBefore by five minutes for clock skew and defaults leaves to one year', async () => {
    const now = Date.now();
    const cert = new X509Certificate(await readFile(join(dir, 'operator.crt')));
    const skew = now - Date.parse(cert.validFrom);
    assert.ok(skew > 4 * 60_000 && skew < 10 * 60_000, `notBefore ${cert.validFrom}`);
    const life = Date.parse(cert.validTo) - now;
    assert.ok(life > 364 * DAY_MS && life <= 365 * DAY_MS, `notAfter ${cert.validTo}`);
  });

  it('issues a named client certificate that the CA verifies', async () => {
    const { certPath, keyPath } = await issueClientCert({ dir, name: 'alice.b-2_x', role: 'operator' });
    assert.equal(certPath, join(dir, 'alice.b-2_x.crt'));
    assert.equal((await mode(keyPath)).toString(8), '600');
    const text = await openssl('x509', '-noout', '-subject', '-in', certPath);
    assert.equal(text, 'subject=CN = alice.b-2_x, O = jiglet, OU = operator\n');
    await openssl('verify', '-CAfile', join(dir, 'ca.crt'), '-purpose', 'sslclient', certPath);
  });

  it('honours an explicit validity window and output directory', async () => {
    const notBefore = new Date('2030-01-01T00:00:00Z');
    const notAfter = new Date('2030-01-02T00:00:00Z');
    const outDir = join(root, 'elsewhere');
    const { certPath } = await issueClientCert({
      dir,
      name: 'later',
      role: 'viewer',
      notBefore,
      notAfter,
      outDir,
    });
    assert.equal(certPath, join(outDir, 'later.crt'));
    const cert = new X509Certificate(await readFile(certPath));
    assert.equal(Date.parse(cert.validFrom), notBefore.getTime());
    assert.equal(Date.parse(cert.validTo), notAfter.getTime());
    // Not yet valid: OpenSSL must say so, which proves the window is really in the certificate.
    await assert.rejects(openssl('verify', '-CAfile', join(dir, 'ca.crt'), certPath), /not yet valid/);
  });

  it('refuses bad names, reserved names, unknown roles and bad validity before writing anything', async () => {
    const before = (await readdir(dir)).sort();
    const bad = [
      { name: '', role: 'admin' },
      { name: 'a'.repeat(65), role: 'admin' },
      { name: 'alice smith', role: 'admin' },
      { name: '../escape', role: 'admin' },
      { name: 'ca', role: 'admin' },
      { name: 'server', role: 'admin' },
      { name: 'bob', role: 'root' },
      { name: 'bob', role: 'Admin' },
    ] as const;
    for (const { name, role } of bad) {
      // The casts stand in for a CLI passing unchecked strings.
      await rejectsWith(issueClientCert({ dir, name, role: role as 'admin' }), 'JIGLET_E_INVALID_ARGUMENT');
    }
    await rejectsWith(
      issueClientCert({ dir, name: 'bob', role: 'admin', days: 0 }),
      'JIGLET_E_INVALID_ARGUMENT',
    );
    const backwards = { notBefore: new Date('2030-01-02'), notAfter: new Date('2030-01-01') };
    await rejectsWith(
      issueClientCert({ dir, name: 'bob', role: 'admin', ...backwards }),
      'JIGLET_E_INVALID_ARGUMENT',
      /notAfter/,
    );
    assert.deepEqual((await readdir(dir)).sort(), before);
  });

  it('refuses to overwrite an existing CA and leaves it untouched', async () => {
    const caKey = await readFile(join(dir, 'ca', 'ca.key'), 'utf8');
    await rejectsWith(initCerts({ dir, hosts: HOSTS }), 'JIGLET_E_ALREADY_EXISTS', /ca\.key exists/);
    assert.equal(await readFile(join(dir, 'ca', 'ca.key'), 'utf8'), caKey);
  });

  it('refuses hosts that are neither IP addresses nor DNS names', async () => {
    const fresh = join(root, 'bad-hosts');
    await rejectsWith(initCerts({ dir: fresh, hosts: [] }), 'JIGLET_E_INVALID_ARGUMENT');
    await rejectsWith(
      initCerts({ dir: fresh, hosts: ['bad host'] }),
      'JIGLET_E_INVALID_ARGUMENT',
      /bad host/,
    );
    await rejectsWith(initCerts({ dir: fresh, hosts: ['-x.example'] }), 'JIGLET_E_INVALID_ARGUMENT');
  });

  it('with force, replaces the CA and tightens a key that had been loosened to 0644', async () => {
    const forced = join(root, 'forced');
    await initCerts({ dir: forced, hosts: ['localhost'] });
    const oldCa = await readFile(join(forced, 'ca.crt'), 'utf8');
    await chmod(join(forced, 'admin.key'), 0o644);
    await initCerts({ dir: forced, hosts: ['localhost'], force: true });
    assert.notEqual(await readFile(join(forced, 'ca.crt'), 'utf8'), oldCa);
    for (const file of KEY_FILES) {
      assert.equal((await mode(join(forced, file))).toString(8), '600', file);
    }
    assert.deepEqual(
      (await readdir(forced)).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });

  describe('a real mutual-TLS 1.3 handshake with the written files', () => {
    let server: tls.Server;
    let port: number;

    before(async () => {
      server = tls.createServer({
        ca: await readFile(join(dir, 'ca.crt')),
        cert: await readFile(fileOf(dir, 'server', 'crt')),
        key: await readFile(fileOf(dir, 'server', 'key')),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      port = (server.address() as { port: number }).port;
    });

    after(async () => {
      server.close();
      await once(server, 'close');
    });

    for (const servername of ['localhost', undefined]) {
      it(`verifies the server as ${servername ?? '127.0.0.1 (IP SAN)'} and the client as operator`, async () => {
        const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
        const client = tls.connect({
          host: '127.0.0.1',
          port,
          ...(servername ? { servername } : {}),
          ca: await readFile(join(dir, 'ca.crt')),
          cert: await readFile(join(dir, 'operator.crt')),
          key: await readFile(join(dir, 'operator.key')),
          minVersion: 'TLSv1.3',
        });
        try {
          await once(client, 'secureConnect');
          assert.equal(client.getProtocol(), 'TLSv1.3');
          assert.equal(client.getPeerCertificate().subject.CN, 'jiglet-agent');
          const [peer] = await accepted;
          assert.equal(peer.authorized, true);
          assert.equal(peer.getPeerCertificate().subject.OU, 'operator');
          peer.destroy();
        } finally {
          client.destroy();
        }
      });
    }
  });
});
