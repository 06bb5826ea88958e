/**
 * Who is calling, taken from the TLS client certificate that the handshake has already verified
 * against our CA: the name is the CN, the role is the single OU (DESIGN §3). SAN strings are never
 * consulted, because Node renders them as escaped text (CVE-2021-44532) and they are easy to misparse.
 */
import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { JigletError } from '../../../protocol/src/errors.js';

/** A caller's role; the same union as client/src/certs.ts, which the agent must not import. */
export type Role = 'admin' | 'operator' | 'viewer';

/** Every role, in decreasing order of power. */
export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer'];

/** An authenticated caller. */
export interface Identity {
  /** The certificate's CN; also the owner recorded on jobs and leases. */
  name: string;
  role: Role;
  /** SHA-256 of the DER certificate, lowercase hex, to tell apart two certificates with one CN. */
  fingerprint: string;
}

/** Same rule jigctl applies when it issues a certificate; names end up in logs and job records. */
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Node types subject fields as strings, but a repeated attribute arrives as an array. */
type NameFields = Readonly<Record<string, string | string[] | undefined>>;

/** True for one of the known roles. */
export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/**
 * Turns a verified peer certificate (grpc-js `sslPeerCertificate`, or `socket.getPeerCertificate()`)
 * into an identity. No certificate or no single usable CN is UNAUTHENTICATED; a missing, repeated or
 * unknown role OU is PERMISSION_DENIED, so a certificate with two roles never gets the stronger one.
 */
export function identityFromCertificate(cert: PeerCertificate | undefined | null): Identity {
  // Node returns {} rather than null when the client sent no certificate.
  if (!cert?.raw || cert.raw.length === 0) {
    throw unauthenticated('the client presented no certificate');
  }
  const subject = (cert.subject ?? {}) as unknown as NameFields;
  const name = singleCommonName(subject.CN);
  // A CA certificate (basic constraint CA:TRUE) can sign others: whoever holds its key could mint
  // any name and role under it. Only leaf certificates are identities.
  if (cert.ca) {
    throw unauthenticated(
      `the certificate of "${name}" is a CA certificate (CA:TRUE); a client needs a leaf certificate: jigctl certs issue --name ${name} --role ROLE`,
    );
  }
  const ou = subject.OU;
  if (ou === undefined) {
    throw denied(`certificate of "${name}" carries no role: it needs one OU out of ${ROLES.join(', ')}`);
  }
  if (typeof ou !== 'string') {
    throw denied(`certificate of "${name}" carries ${ou.length} OUs; exactly one role is allowed`);
  }
  if (!isRole(ou)) {
    throw denied(`certificate of "${name}" carries unknown role ${JSON.stringify(ou)}`);
  }
  return { name, role: ou, fingerprint: createHash('sha256').update(cert.raw).digest('hex') };
}

function singleCommonName(cn: string | string[] | undefined): string {
  if (cn === undefined) {
    throw unauthenticated('the client certificate has no common name (CN)');
  }
  if (typeof cn !== 'string') {
    throw unauthenticated(
      `the client certificate has ${cn.length} common names (CN); exactly one is allowed`,
    );
  }
  if (!NAME_PATTERN.test(cn)) {
    throw unauthenticated(
      `the client certificate's CN ${JSON.stringify(cn)} is not 1-64 characters of A-Z a-z 0-9 . _ -`,
    );
  }
  return cn;
}

function unauthenticated(message: string): JigletError {
  return new JigletError('JIGLET_E_UNAUTHENTICATED', message);
}

function denied(message: string): JigletError {
  return new JigletError('JIGLET_E_PERMISSION_DENIED', message);
}
