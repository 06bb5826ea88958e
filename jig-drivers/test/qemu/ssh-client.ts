/**
 * The OpenSSH client (ssh, sftp, ssh-keyscan from Debian's openssh-client) pointed at a QEMU DUT's
 * forwarded SSH port, as an engineer would use it: a real process per command, no user config,
 * known hosts in the test's own file.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';

export { freePort } from '../../../fixtures/test-support/free-port.js';

/** One command's outcome. */
export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Between two connection attempts while the DUT's SSH server is not up yet. */
const RETRY_EVERY_MS = 250;

/** Runs `command args`, feeding `input`, and collects its output and exit code. */
export async function run(command: string, args: string[], input = ''): Promise<SshResult> {
  const child = spawn(command, args, { stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdin.end(input);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** An OpenSSH client for one DUT: `root@host -p port` with one key and one known_hosts file. */
export class SshClient {
  readonly #host: string;
  readonly #port: number;
  readonly #key: string;
  readonly #knownHosts: string;

  constructor(target: { host: string; port: number }, key: string, knownHosts: string) {
    this.#host = target.host;
    this.#port = target.port;
    this.#key = key;
    this.#knownHosts = knownHosts;
  }

  /** Options both ssh and sftp take: the key only, strict host key checks, no prompts. */
  #options(): string[] {
    return [
      ...['-F', '/dev/null', '-i', this.#key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes'],
      ...['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${this.#knownHosts}`],
      ...['-o', 'ConnectTimeout=20', '-o', 'LogLevel=ERROR'],
    ];
  }

  /** `ssh root@DUT COMMAND`. */
  exec(command: string): Promise<SshResult> {
    return run('ssh', [...this.#options(), '-p', String(this.#port), `root@${this.#host}`, command]);
  }

  /** `sftp -b -` with the given batch commands; a failed command fails the batch. */
  sftp(batch: string[]): Promise<SshResult> {
    const args = [...this.#options(), '-P', String(this.#port), '-b', '-', `root@${this.#host}`];
    return run('sftp', args, `${batch.join('\n')}\n`);
  }

  /**
   * The DUT's ed25519 host key (`ssh-ed25519 AAAA…`), re-asked until the server answers (it starts
   * with the login prompt, a moment after it, or a boot later): fails at the deadline.
   */
  async hostKey(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last: SshResult | undefined;
    while (Date.now() < deadline) {
      last = await run('ssh-keyscan', ['-T', '5', '-t', 'ed25519', '-p', String(this.#port), this.#host]);
      const line = last.stdout.split('\n').find((l) => l.includes(' ssh-ed25519 '));
      if (line) return line.slice(line.indexOf('ssh-ed25519 ')).trim();
      await delay(RETRY_EVERY_MS);
    }
    throw new Error(
      `no SSH host key from ${this.#host}:${this.#port} within ${timeoutMs} ms: ${last?.stderr}`,
    );
  }

  /** Trusts exactly `hostKey` for this DUT from now on (what a first `ssh` would record). */
  knownHostsLine(hostKey: string): string {
    return `[${this.#host}]:${this.#port} ${hostKey}\n`;
  }
}
