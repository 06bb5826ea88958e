/**
 * The agent's TLS directory: ca.crt, server.crt and server.key, nothing more. Whoever reads a CA
 * private key on a jig host can mint an admin certificate, so the agent refuses to start beside
 * one (unless told it is a throwaway demo) and refuses a server key others can read.
 */
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { JigletError } from '../../../protocol/src/errors.js';
import type { ServerTls } from '../rpc/grpc-server.js';

/** Files larger than this are not PEM keys; skipping them keeps the scan cheap. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads ca.crt, server.crt and server.key from a TLS directory, after the checks above. Every
 * refusal is INVALID_ARGUMENT: the folder is part of the agent's configuration (`jiglet` exits 78).
 */
export function readServerTls(tlsDir: string, opts: { allowCaKey?: boolean; log?: Logger } = {}): ServerTls {
  const read = (name: string): Buffer => {
    try {
      return readFileSync(join(tlsDir, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = hasFile(join(tlsDir, 'jig', name))
        ? `this looks like the folder \`jigctl certs init\` writes: pass --tls-dir ${join(tlsDir, 'jig')}`
        : `create one with \`jigctl certs init --dir DIR\` and pass --tls-dir DIR/jig`;
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `cannot read ${join(tlsDir, name)} (${code}); ${hint}`,
      );
    }
  };
  const tls = { ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key') };
  const keyMode = statSync(join(tlsDir, 'server.key')).mode;
  if ((keyMode & 0o077) !== 0) {
    throw new JigletError(
      'JIGLET_E_INVALID_ARGUMENT',
      `${join(tlsDir, 'server.key')} is readable by other users (mode ${(keyMode & 0o777).toString(8)}); run: chmod 600 ${join(tlsDir, 'server.key')}`,
    );
  }
  const caKeys = findCaKeys(tlsDir, tls.ca);
  if (caKeys.length > 0) {
    if (!opts.allowCaKey) {
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `the CA's private key is on this jig host (${caKeys.join(', ')}): anyone who reads it can make ` +
          'an admin certificate. Move it off the host (it is only needed to issue certificates) and ' +
          'keep ca.crt, server.crt and server.key here; for a throwaway demo pass --allow-ca-key',
      );
    }
    opts.log?.warn(
      { files: caKeys },
      "serving beside the CA's private key (--allow-ca-key): fine for a demo, never for a lab",
    );
  }
  return tls;
}

/**
 * Files in the TLS directory (and the folders right under it) holding the private key of the CA
 * in ca.crt. A file called ca.key counts even when it does not parse: its name says what it is.
 */
function findCaKeys(tlsDir: string, caPem: Buffer): string[] {
  const caPublic = new X509Certificate(caPem).publicKey
    .export({ type: 'spki', format: 'der' })
    .toString('base64');
  const found: string[] = [];
  const scan = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return; // an unreadable folder holds nothing the agent could serve from either
    }
    for (const name of names) {
      const path = join(dir, name);
      let stat: ReturnType<typeof statSync>;
      try {
        stat = statSync(path);
      } catch {
        continue;
      }
      if (stat.isDirectory()) {
        if (depth > 0) scan(path, depth - 1);
      } else if (stat.isFile() && (name === 'ca.key' || isKeyOf(path, stat.size, caPublic))) {
        found.push(path);
      }
    }
  };
  scan(tlsDir, 1);
  return found;
}

function isKeyOf(path: string, size: number, publicDer: string): boolean {
  if (size > MAX_KEY_FILE_BYTES) return false;
  try {
    const text = readFileSync(path, 'utf8');
    if (!text.includes('PRIVATE KEY')) return false;
    const derived = createPublicKey(createPrivateKey(text)).export({ type: 'spki', format: 'der' });
    return derived.toString('base64') === publicDer;
  } catch {
    return false;
  }
}

function hasFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
