/**
 * Development PKI for `jigctl certs`: one CA, the agent's server certificate and one client
 * certificate per role. The client's identity is its CN and its role is the single OU (DESIGN §3).
 * All crypto goes through @peculiar/x509 on Node's WebCrypto; nothing here is hand-rolled.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { access, chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { invalidArgument, JigletError } from '../../protocol/src/errors.js';

x509.cryptoProvider.set(webcrypto);

/** A client role; the agent defines the same union in agent/src/auth/identity.ts. */
export type Role = 'admin' | 'operator' | 'viewer';

/** Every role, in decreasing order of power. */
export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer'];

const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 24 * 60 * 60 * 1000;
const CA_DAYS = 3650;
const LEAF_DAYS = 365;
/** A jig host whose clock lags a few minutes must still accept a certificate issued just now. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const MAX_DAYS = 36500;
const KEY_FILE_MODE = 0o600;
const CERT_FILE_MODE = 0o644;
const DIR_MODE = 0o700;
const ORGANIZATION = 'jiglet';
const SERVER_CN = 'jiglet-agent';
const CA_FILE = 'ca';
const SERVER_FILE = 'server';
/**
 * The layout `certs init` writes (README "Certificates"): the CA's key in a folder of its own that
 * never goes to a jig host, the agent's three files in another, the clients' files at the top.
 */
export const CA_DIR = 'ca';
export const JIG_DIR = 'jig';
/** Client names double as file names, so they must not clobber the CA's or the server's files. */
const RESERVED_NAMES: ReadonlySet<string> = new Set([CA_FILE, SERVER_FILE]);
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A certificate and its PKCS#8 private key, both PEM. */
export interface PemPair {
  certPem: string;
  keyPem: string;
}

/**
 * Creates the CA in `dir/ca/`, the agent's files in `dir/jig/` (ca.crt, server.crt, server.key:
 * all a jig host needs) and one certificate per role, with ca.crt, in `dir/`. `days` sets the leaf
 * validity; the CA lives 10 years, or longer if the leaves would outlive it. Refuses an existing CA
 * key unless `force`, since replacing the CA silently invalidates every certificate handed out.
 */
export async function initCerts(opts: {
  dir: string;
  hosts: string[];
  days?: number;
  force?: boolean;
}): Promise<string[]> {
  const days = checkDays(opts.days ?? LEAF_DAYS);
  const hosts = checkHosts(opts.hosts);
  const caKeyPath = join(opts.dir, CA_DIR, `${CA_FILE}.key`);
  const legacyCaKey = join(opts.dir, `${CA_FILE}.key`);
  if (!opts.force && ((await exists(caKeyPath)) || (await exists(legacyCaKey)))) {
    throw new JigletError(
      'JIGLET_E_ALREADY_EXISTS',
      `${caKeyPath} exists already; pass force to replace the CA (every issued certificate stops working)`,
    );
  }
  const ca = await createCa('jiglet development CA', Math.max(CA_DAYS, days));
  const { notBefore, notAfter } = validity(days);
  const server = await issueCert({
    ca,
    subject: subjectOf(SERVER_CN),
    server: { hosts },
    notBefore,
    notAfter,
  });
  const pairs: [string, PemPair][] = [];
  for (const role of ROLES) {
    pairs.push([role, await issueCert({ ca, subject: subjectOf(role, role), notBefore, notAfter })]);
  }
  const caDir = join(opts.dir, CA_DIR);
  const jigDir = join(opts.dir, JIG_DIR);
  for (const d of [opts.dir, caDir, jigDir]) await mkdir(d, { recursive: true, mode: DIR_MODE });
  // An older layout kept the CA key beside the agent's files; it moves, so only one copy exists.
  await rm(legacyCaKey, { force: true });
  const written = await writePair(caDir, CA_FILE, ca);
  written.push(...(await writePair(jigDir, SERVER_FILE, server)));
  for (const where of [jigDir, opts.dir]) {
    const path = join(where, `${CA_FILE}.crt`);
    await writeFile(path, ca.certPem, { mode: CERT_FILE_MODE });
    await chmod(path, CERT_FILE_MODE);
    written.push(path);
  }
  for (const [name, pair] of pairs) {
    written.push(...(await writePair(opts.dir, name, pair)));
  }
  return written;
}

/** Issues `<name>.crt`/`<name>.key` for one client, signed by the CA in `dir`. */
export async function issueClientCert(opts: {
  dir: string;
  name: string;
  role: Role;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  outDir?: string;
}): Promise<{ certPath: string; keyPath: string }> {
  checkName(opts.name);
  checkRole(opts.role);
  const defaults = validity(checkDays(opts.days ?? LEAF_DAYS));
  const notBefore = opts.notBefore ?? defaults.notBefore;
  const notAfter = opts.notAfter ?? defaults.notAfter;
  const ca = await readCa(opts.dir);
  const pair = await issueCert({ ca, subject: subjectOf(opts.name, opts.role), notBefore, notAfter });
  const outDir = opts.outDir ?? opts.dir;
  await mkdir(outDir, { recursive: true, mode: DIR_MODE });
  const [certPath, keyPath] = await writePair(outDir, opts.name, pair);
  return { certPath: certPath!, keyPath: keyPath! };
}

/** Reads the CA of a `certs init` folder: `ca/` today, the folder itself in the older layout. */
export async function readCa(dir: string): Promise<PemPair> {
  for (const where of [join(dir, CA_DIR), dir]) {
    if (!(await exists(join(where, `${CA_FILE}.key`)))) continue;
    return {
      certPem: await readFile(join(where, `${CA_FILE}.crt`), 'utf8'),
      keyPem: await readFile(join(where, `${CA_FILE}.key`), 'utf8'),
    };
  }
  throw new JigletError(
    'JIGLET_E_NOT_FOUND',
    `no CA key in ${join(dir, CA_DIR)}: issue certificates where the CA lives (the folder \`jigctl certs init\` made), not on a jig host`,
  );
}

/** Creates a self-signed CA in memory (CA:true, keyCertSign|cRLSign, no intermediates). */
export async function createCa(commonName: string, days: number = CA_DAYS): Promise<PemPair> {
  const keys = await generateKeys();
  const { notBefore, notAfter } = validity(checkDays(days));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: [{ CN: [commonName] }, { O: [ORGANIZATION] }],
    keys,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKey(keys.privateKey) };
}

/**
 * Issues a certificate for any subject and validity window, signed by `ca`: a server certificate
 * when `server` is given, else a client one. Deliberately checks nothing about the subject, so tests
 * can mint the malformed identities the agent must refuse.
 */
export async function issueCert(opts: {
  ca: PemPair;
  subject: string;
  server?: { hosts: string[] };
  notBefore: Date;
  notAfter: Date;
}): Promise<PemPair> {
  if (!(opts.notAfter.getTime() > opts.notBefore.getTime())) {
    throw invalidArgument(`notAfter (${opts.notAfter.toISOString()}) must be later than notBefore`);
  }
  const caCert = new x509.X509Certificate(opts.ca.certPem);
  const caKey = await importKey(opts.ca.keyPem);
  const keys = await generateKeys();
  const usage = opts.server
    ? [
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(checkHosts(opts.server.hosts).map(toGeneralName)),
      ]
    : [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])];
  const cert = await x509.X509CertificateGenerator.create({
    subject: opts.subject,
    // The CA's encoded name, not a re-parsed string, so issuer and CA subject match byte for byte.
    issuer: caCert.subjectName,
    publicKey: keys.publicKey,
    signingKey: caKey,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ...usage,
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKey(keys.privateKey) };
}

function subjectOf(commonName: string, role?: Role): string {
  return role ? `CN=${commonName}, O=${ORGANIZATION}, OU=${role}` : `CN=${commonName}, O=${ORGANIZATION}`;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * DAY_MS) };
}

function checkName(name: string): void {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw invalidArgument(`client name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 . _ -`);
  }
  if (RESERVED_NAMES.has(name)) {
    throw invalidArgument(
      `client name "${name}" is reserved: its files would overwrite the ${name} certificate`,
    );
  }
}

function checkRole(role: string): asserts role is Role {
  if (!(ROLES as readonly string[]).includes(role)) {
    throw invalidArgument(`role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`);
  }
}

function checkDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw invalidArgument(`days must be a whole number from 1 to ${MAX_DAYS}, got ${days}`);
  }
  return days;
}

function checkHosts(hosts: string[]): string[] {
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw invalidArgument('the server certificate needs at least one host name or IP address');
  }
  for (const host of hosts) {
    if (isIP(host) === 0 && !isDnsName(host)) {
      throw invalidArgument(`host ${JSON.stringify(host)} is neither an IP address nor a DNS name`);
    }
  }
  return hosts;
}

function isDnsName(host: string): boolean {
  return host.length <= 253 && host.split('.').every((label) => DNS_LABEL.test(label));
}

/** TLS clients match IP literals only against IP SANs, so an IP must not become a DNS SAN. */
function toGeneralName(host: string): x509.JsonGeneralName {
  return { type: isIP(host) === 0 ? 'dns' : 'ip', value: host };
}

function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function writePair(dir: string, name: string, pair: PemPair): Promise<string[]> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await writeFile(certPath, pair.certPem, { mode: CERT_FILE_MODE });
  await chmod(certPath, CERT_FILE_MODE); // a certificate is public, whatever the umask says
  await writeSecret(keyPath, pair.keyPem);
  return [certPath, keyPath];
}

/**
 * `writeFile`'s mode only applies to a new file, so overwriting an old 0644 key would keep it
 * readable; a fresh 0600 file renamed into place never exposes the key, even briefly.
 */
async function writeSecret(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode: KEY_FILE_MODE, flag: 'wx' });
    await chmod(tmp, KEY_FILE_MODE); // the umask may have taken bits away; make the mode exact
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
