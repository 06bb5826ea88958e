/**
 * The agent's SSH connection to one DUT: one connection, shared by every exec, copy and session
 * on that DUT, made on first use and made again after it drops (a power cycle, a reboot, a dead
 * network: keepalives notice within ~15 s). Connecting retries until the caller's deadline while
 * the DUT boots (refused, reset, closed during the handshake), but a refused host key, a refused
 * login or an unusable key file fail at once: waiting would not change them.
 */
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import ssh2, { type Client, type ConnectConfig } from 'ssh2';
import { abortable } from '../../../jig-drivers/src/deadline.js';
import type { SshConfig } from '../../../jig-drivers/src/ssh-config.js';
import { failedPrecondition, JigletError } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { DutRuntime } from './dut-runtime.js';
import { HostKeyFile, type HostKeyVerdict, judgeHostKey } from './ssh-host-key.js';

/** Channels (execs, copies, sessions) one DUT's connection carries at once. */
export const MAX_SSH_CHANNELS = 16;
/** Keepalive: a connection whose DUT stopped answering is dropped after 3 × 5 s. */
const KEEPALIVE_MS = 5000;
const KEEPALIVE_COUNT = 3;
/** Waits between connection attempts while the DUT boots. */
const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 2000;

/** What a DUT's SSH connection works with. */
export interface DutSshOptions {
  dut: string;
  config: SshConfig;
  hostKeys: HostKeyFile;
  /** When a flash of the DUT through this agent last completed (0: never). */
  lastFlashedAt: () => number;
  log: Logger;
  /** Records a host key learnt, re-learnt or refused in the run journal. */
  record: (change: 'host-key-learnt' | 'host-key-relearnt' | 'host-key-refused', detail: string) => void;
}

/** An attempt that failed in a way a retry cannot fix. */
class FatalConnectError extends Error {
  constructor(readonly error: JigletError) {
    super(error.message);
  }
}

/** One DUT's SSH connection. */
export class DutSsh {
  readonly #opts: DutSshOptions;
  #client: Client | undefined;
  #pending: { promise: Promise<Client>; waiters: number; stop: AbortController } | undefined;
  #lastError = 'no attempt yet';
  #channels = 0;
  #closed = false;

  constructor(opts: DutSshOptions) {
    this.#opts = opts;
  }

  /**
   * The SSH connection of a DUT whose description has an `ssh:` section: host keys kept in the
   * state directory, dropped whenever the DUT is powered (a reboot ends every session anyway),
   * host key changes recorded in the run journal.
   */
  static forDut(
    dut: DutRuntime,
    config: SshConfig,
    stateDir: string,
    events: AgentEvents,
    log: Logger,
  ): DutSsh {
    const name = dut.dut.name;
    const ssh = new DutSsh({
      dut: name,
      config,
      hostKeys: new HostKeyFile(stateDir, name, log),
      lastFlashedAt: () => (dut.storage.dirty ? 0 : dut.storage.lastFlashedAt),
      log: log.child({ dut: name, ssh: `${config.host}:${config.port}` }),
      record: (change, detail) => events.publish({ kind: 'ssh', at: Date.now(), dut: name, change, detail }),
    });
    dut.on('power', (action: string) => {
      if (action !== 'status') ssh.drop(`power ${action}`);
    });
    dut.on('closed', () => ssh.close());
    return ssh;
  }

  /** `user@host:port`, as people write it. */
  get endpoint(): string {
    const { user, host, port } = this.#opts.config;
    return `${user}@${host}:${port}`;
  }

  /**
   * The connection, made (with retries) if there is none. `signal` bounds the wait; when it aborts
   * the call fails with DEADLINE_EXCEEDED naming the last error seen.
   */
  async connection(signal: AbortSignal): Promise<Client> {
    if (this.#closed) throw new JigletError('JIGLET_E_UNAVAILABLE', `${this.#opts.dut} is being removed`);
    if (this.#client) return this.#client;
    if (!this.#pending) {
      const stop = new AbortController();
      const promise = this.#connectLoop(stop.signal);
      const pending = { promise, waiters: 0, stop };
      this.#pending = pending;
      // Settled either way; each waiter sees the outcome through its own race below.
      promise
        .finally(() => {
          if (this.#pending === pending) this.#pending = undefined;
        })
        .catch(() => undefined);
    }
    const pending = this.#pending;
    pending.waiters++;
    const started = Date.now();
    try {
      return await abortable(pending.promise, signal);
    } catch (error) {
      // The caller's deadline, not the attempts': say what the attempts saw meanwhile.
      if (signal.aborted && error === signal.reason) throw this.#timeoutError(Date.now() - started);
      throw error;
    } finally {
      // The last caller gone ends the attempts; a connection made meanwhile is kept for the next.
      if (--pending.waiters === 0 && this.#pending === pending && !this.#client) pending.stop.abort();
    }
  }

  /**
   * Opens a channel with `open` on the connection. A connection that died without a word (the
   * DUT's SSH server process crashed, its network went away) fails the first open: it is dropped
   * and the open is tried once more on a new connection.
   */
  async openChannel<T>(signal: AbortSignal, open: (client: Client) => Promise<T>): Promise<T> {
    const client = await this.connection(signal);
    try {
      return await open(client);
    } catch (error) {
      if (signal.aborted) throw error;
      this.#opts.log.info({ err: (error as Error).message }, 'SSH channel refused; connecting again');
      if (this.#client === client) this.drop(`a channel failed: ${(error as Error).message}`);
      return open(await this.connection(signal));
    }
  }

  /** Takes one of the connection's channel slots; the returned function gives it back. */
  takeChannel(): () => void {
    if (this.#channels >= MAX_SSH_CHANNELS)
      throw new JigletError(
        'JIGLET_E_RESOURCE_EXHAUSTED',
        `${MAX_SSH_CHANNELS} SSH sessions, execs and copies are open on ${this.#opts.dut}: wait for one to end`,
      );
    this.#channels++;
    let given = false;
    return () => {
      if (!given) this.#channels--;
      given = true;
    };
  }

  /** Ends the connection (the DUT was powered or rebooted): the next call connects again. */
  drop(reason: string): void {
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      this.#opts.log.info({ reason }, 'SSH connection dropped');
      client.end();
    }
  }

  /** Forgets the learnt host key (the next connection learns the one shown then); returns its fingerprint. */
  forgetHostKey(): string {
    const learnt = this.#opts.hostKeys.load();
    this.#opts.hostKeys.remove();
    this.drop('host key forgotten');
    return learnt?.fingerprint ?? '';
  }

  /** Ends the connection and any attempt for good. */
  close(): void {
    this.#closed = true;
    this.#pending?.stop.abort();
    this.drop('closing');
  }

  #timeoutError(waitedMs: number): JigletError {
    const { dut } = this.#opts;
    return new JigletError(
      'JIGLET_E_DEADLINE_EXCEEDED',
      `the SSH server of ${dut} (${this.endpoint}) did not let jiglet in within ${Math.round(waitedMs / 1000)} s ` +
        `(last: ${this.#lastError}). Is ${dut} booted with its network up? Check its serial log ` +
        `(jigctl serial --dut ${dut}) or bring it up first (jigctl dut goto ${dut} booted).`,
    );
  }

  async #connectLoop(stop: AbortSignal): Promise<Client> {
    let wait = RETRY_FIRST_MS;
    for (;;) {
      try {
        return await this.#attempt(stop);
      } catch (error) {
        if (error instanceof FatalConnectError) {
          this.#lastError = error.message;
          throw error.error;
        }
        if (stop.aborted) throw error;
        this.#lastError = describeAttemptError(error);
      }
      await sleep(wait, undefined, { signal: stop });
      wait = Math.min(wait * 2, RETRY_MAX_MS);
    }
  }

  async #attempt(stop: AbortSignal): Promise<Client> {
    const { config, dut } = this.#opts;
    const privateKey = await readPrivateKey(dut, config.keyFile);
    return new Promise<Client>((resolve, reject) => {
      const client = new ssh2.Client();
      let verdict: HostKeyVerdict | undefined;
      let settled = false;
      const settle = (error?: Error): void => {
        if (settled) return;
        settled = true;
        stop.removeEventListener('abort', onStop);
        if (error) {
          client.end();
          reject(error);
          return;
        }
        this.#adopt(client, verdict);
        resolve(client);
      };
      const onStop = (): void => settle(new Error('stopped'));
      stop.addEventListener('abort', onStop, { once: true });
      // ssh2 emits 'error' for every failure; a client without a listener would end the agent.
      client.on('error', (error: Error & { level?: string }) => {
        if (settled) return;
        if (verdict && !verdict.accept) settle(new FatalConnectError(failedPrecondition(verdict.reason)));
        else if (error.level === 'client-authentication')
          settle(
            new FatalConnectError(
              failedPrecondition(
                `the SSH server of ${dut} (${this.endpoint}) refused the key ${config.keyFile}: is its public key in ~${config.user}/.ssh/authorized_keys on ${dut}?`,
              ),
            ),
          );
        else settle(error);
      });
      client.once('close', () => settle(new Error('the connection closed during the SSH handshake')));
      client.once('ready', () => {
        // ssh2 leaves Nagle on. SFTP and exec are request/reply: the last segment of each
        // request then waited for the DUT's delayed ACK (40 ms), so `jigctl cp` ran at
        // 0.4–0.5 MB/s against scp's 9–12 and a warm exec took 63 ms against 24 with it off.
        client.setNoDelay(true);
        settle();
      });
      const connect: ConnectConfig = {
        host: config.host,
        port: config.port,
        username: config.user,
        privateKey,
        readyTimeout: config.connectTimeoutMs,
        keepaliveInterval: KEEPALIVE_MS,
        keepaliveCountMax: KEEPALIVE_COUNT,
        hostVerifier: (key: Buffer) => {
          verdict = judgeHostKey({
            dut,
            endpoint: `${config.host}:${config.port}`,
            policy: config.hostKey,
            learnt: this.#opts.hostKeys.load(),
            shown: key,
            lastFlashedAt: this.#opts.lastFlashedAt(),
            now: Date.now(),
          });
          if (!verdict.accept) this.#opts.record('host-key-refused', verdict.reason);
          return verdict.accept;
        },
      };
      client.connect(connect);
    });
  }

  /** Keeps a connection that got through, and learns its host key if it was new. */
  #adopt(client: Client, verdict: HostKeyVerdict | undefined): void {
    if (verdict?.accept && verdict.change !== 'same') {
      this.#opts.hostKeys.save(verdict.key);
      const detail =
        verdict.change === 'learnt'
          ? `learnt ${verdict.key.fingerprint} from ${verdict.key.endpoint}`
          : `re-learnt after a flash: ${verdict.previous?.fingerprint} → ${verdict.key.fingerprint}`;
      this.#opts.log.info({ fingerprint: verdict.key.fingerprint }, `SSH host key ${detail}`);
      this.#opts.record(verdict.change === 'learnt' ? 'host-key-learnt' : 'host-key-relearnt', detail);
    }
    this.drop('replaced');
    this.#client = client;
    this.#lastError = 'connected';
    client.on('close', () => {
      if (this.#client === client) this.#client = undefined;
    });
    client.on('error', (error: Error) =>
      this.#opts.log.warn({ err: error.message }, 'SSH connection failed'),
    );
  }
}

/** Reads a DUT's private key, refusing one that other users can read or that does not parse. */
async function readPrivateKey(dut: string, file: string): Promise<Buffer> {
  const where = `the SSH key of ${dut} (ssh.keyFile ${file})`;
  let key: Buffer;
  try {
    // Other users able to read the key could log in to the DUT as the agent does.
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0)
      throw new FatalConnectError(
        failedPrecondition(
          `${where} can be read by other users (mode ${mode.toString(8)}): chmod 600 it, and keep it owned by the user jiglet runs as`,
        ),
      );
    key = await readFile(file);
  } catch (error) {
    if (error instanceof FatalConnectError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new FatalConnectError(failedPrecondition(`cannot read ${where}: ${code}`));
  }
  const parsed = ssh2.utils.parseKey(key);
  if (parsed instanceof Error)
    throw new FatalConnectError(
      failedPrecondition(
        `${where} is not a private key jiglet can use (${parsed.message}); OpenSSH or PEM format, without a passphrase`,
      ),
    );
  return key;
}

/** A connection attempt's failure in a few words. */
function describeAttemptError(error: unknown): string {
  const err = error as NodeJS.ErrnoException & { level?: string };
  if (err.code === 'ECONNREFUSED') return 'connection refused';
  if (err.code === 'ECONNRESET') return 'connection reset';
  if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return 'no route to the DUT';
  if (err.level === 'client-timeout') return 'no SSH handshake within the connect timeout';
  return err.message ?? String(error);
}
