/**
 * Identities are read from peer certificates that came through a real TLS 1.3 handshake, because
 * the shape Node gives them (arrays for repeated attributes, `{}` for no certificate) is the thing
 * under test; hand-written certificate objects would only restate our assumptions.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { createCa, issueCert, type PemPair } from '../../client/src/certs.js';
import { JigletError } from '../../protocol/src/errors.js';
import { identityFromCertificate } from '../src/auth/identity.js';

const HOUR_MS = 60 * 60 * 1000;

interface Handshake {
  protocol: string | null;
  peer: tls.PeerCertificate;
}

/** A TLS 1.3 server on 127.0.0.1, port 0, that asks every client for a certificate. */
async function listen(ca: PemPair, serverCert: PemPair, rejectUnauthorized: boolean): Promise<tls.Server> {
  const server = tls.createServer({
    ca: ca.certPem,
    cert: serverCert.certPem,
    key: serverCert.keyPem,
    requestCert: true,
    rejectUnauthorized,
    minVersion: 'TLSv1.3',
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

async function close(server: tls.Server): Promise<void> {
  server.close();
  await once(server, 'close');
}

/**
 * Connects with `client` (or no certificate) and resolves with what the server saw. In TLS 1.3 the
 * client finishes before the server has checked its certificate, so success or refusal is judged
 * on the server's side.
 */
async function handshake(server: tls.Server, ca: PemPair, client?: PemPair): Promise<Handshake> {
  const seen = new Promise<tls.TLSSocket>((resolve, reject) => {
    const onSecure = (socket: tls.TLSSocket): void => {
      server.off('tlsClientError', onRefused);
      resolve(socket);
    };
    const onRefused = (err: Error): void => {
      server.off('secureConnection', onSecure);
      reject(err);
    };
    server.once('secureConnection', onSecure);
    server.once('tlsClientError', onRefused);
  });
  const socket = tls.connect({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    ca: ca.certPem,
    ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
    minVersion: 'TLSv1.3',
  });
  // The server's refusal reaches the client as an alert after it believed it was connected; the
  // outcome is asserted through `seen`, so the client's copy of that error carries nothing new.
  void once(socket, 'error');
  try {
    const peerSocket = await seen;
    const result = { protocol: peerSocket.getProtocol(), peer: peerSocket.getPeerCertificate() };
    peerSocket.destroy();
    return result;
  } finally {
    socket.destroy();
  }
}

function assertRefused(cert: tls.PeerCertificate | undefined | null, code: string, pattern: RegExp): void {
  assert.throws(
    () => identityFromCertificate(cert),
    (err: unknown) => {
      assert.ok(err instanceof JigletError, `expected a JigletError, got ${String(err)}`);
      assert.equal(err.code, code);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe('identityFromCertificate (agent/src/auth/identity.ts)', () => {
  let ca: PemPair;
  let server: tls.Server;
  let lenient: tls.Server;
  const validity = (): { notBefore: Date; notAfter: Date } => ({
    notBefore: new Date(Date.now() - HOUR_MS),
    notAfter: new Date(Date.now() + HOUR_MS),
  });
  const clientCert = (subject: string): Promise<PemPair> => issueCert({ ca, subject, ...validity() });

  before(async () => {
    ca = await createCa('identity test CA', 1);
    const serverCert = await issueCert({
      ca,
      subject: 'CN=jiglet-agent',
      server: { hosts: ['127.0.0.1'] },
      ...validity(),
    });
    server = await listen(ca, serverCert, true);
    // Only this server lets a client without a certificate through, to see what Node reports then.
    lenient = await listen(ca, serverCert, false);
  });

  after(async () => {
    await Promise.all([close(server), close(lenient)]);
  });

  for (const role of ['admin', 'operator', 'viewer'] as const) {
    it(`reads name and ${role} role from a certificate presented over TLS 1.3`, async () => {
      const cert = await clientCert(`CN=alice, O=jiglet, OU=${role}`);
      const { protocol, peer } = await handshake(server, ca, cert);
      assert.equal(protocol, 'TLSv1.3');
      const expected = new X509Certificate(cert.certPem).fingerprint256.replaceAll(':', '').toLowerCase();
      assert.deepEqual(identityFromCertificate(peer), { name: 'alice', role, fingerprint: expected });
    });
  }

  it('refuses a certificate without an OU as permission denied', async () => {
    const { peer } = await handshake(server, ca, await clientCert('CN=bob, O=jiglet'));
    assertRefused(peer, 'JIGLET_E_PERMISSION_DENIED', /"bob" carries no role/);
  });

  it('refuses two OUs, which Node delivers as an array, even when both are roles', async () => {
    const { peer } = await handshake(server, ca, await clientCert('CN=bob, OU=viewer, OU=admin'));
    assert.deepEqual(peer.subject.OU, ['viewer', 'admin']);
    assertRefused(peer, 'JIGLET_E_PERMISSION_DENIED', /2 OUs/);
  });

  it('refuses an OU that is not a role, including a role spelled in another case', async () => {
    for (const ou of ['root', 'Admin', 'admin ']) {
      const { peer } = await handshake(server, ca, await clientCert(`CN=bob, OU=${JSON.stringify(ou)}`));
      assertRefused(peer, 'JIGLET_E_PERMISSION_DENIED', /unknown role/);
    }
  });

  it('refuses a certificate without a CN as unauthenticated', async () => {
    const { peer } = await handshake(server, ca, await clientCert('O=jiglet, OU=admin'));
    assertRefused(peer, 'JIGLET_E_UNAUTHENTICATED', /no common name/);
  });

  it('refuses two CNs, or a CN that is not a plain name, as unauthenticated', async () => {
    const twice = await handshake(server, ca, await clientCert('CN=alice, CN=admin, OU=admin'));
    assert.deepEqual(twice.peer.subject.CN, ['alice', 'admin']);
    assertRefused(twice.peer, 'JIGLET_E_UNAUTHENTICATED', /2 common names/);
    const spaced = await handshake(server, ca, await clientCert('CN=alice smith, OU=admin'));
    assertRefused(spaced.peer, 'JIGLET_E_UNAUTHENTICATED', /not 1-64 characters/);
  });

  it('refuses a client that presented no certificate, which Node reports as {}', async () => {
    const { peer } = await handshake(lenient, ca);
    assert.deepEqual(peer, {});
    assertRefused(peer, 'JIGLET_E_UNAUTHENTICATED', /no certificate/);
    assertRefused(undefined, 'JIGLET_E_UNAUTHENTICATED', /no certificate/);
    assertRefused(null, 'JIGLET_E_UNAUTHENTICATED', /no certificate/);
  });

  it('never gets as far as identity for a certificate from another CA', async () => {
    const other = await createCa('someone else', 1);
    const forged = await issueCert({ ca: other, subject: 'CN=mallory, OU=admin', ...validity() });
    // Node's server drops such a socket without saying why (the tlsClientError is a bare "socket hang
    // up"); what matters is that no secureConnection, and so no identity, ever comes of it.
    await assert.rejects(handshake(server, ca, forged));
  });
});
