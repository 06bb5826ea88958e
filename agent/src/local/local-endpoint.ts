/**
 * The local endpoint: gRPC without TLS on a unix socket in the state directory, for the agent's
 * own jobs (DESIGN §3). The agent accepts each connection itself, finds out which job's process
 * holds the other end (socket-peer.ts), tags the socket with a marker for that job
 * (local-callers.ts) and only then hands it to grpc-js. The auth interceptor does the rest.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { type Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { LocalJob } from '../jobs/supervisor.js';
import type { LocalCallers, LocalConnection } from './local-callers.js';
import { jobsHolding, peerInode, socketInode } from './socket-peer.js';

/** What grpc-js's createConnectionInjector returns. */
type ConnectionInjector = ReturnType<Server['createConnectionInjector']>;

/** The socket's name in the state directory. */
export const LOCAL_SOCKET = 'jiglet.sock';
/**
 * Anyone on the host may connect: jobs run as their owners' uids. Who gets anything is decided
 * per connection from the job its process belongs to, never from the uid or the file mode.
 */
const SOCKET_MODE = 0o666;

/** A listening local endpoint. */
export interface LocalEndpoint {
  readonly path: string;
  /**
   * Hands connections to this gRPC server from now on; those accepted before wait for it. The
   * socket listens before the jig starts, so a health check due at start finds it.
   */
  serve(grpc: Server): void;
  /** Stops accepting; the gRPC server's shutdown ends the connections it was handed. */
  close(): Promise<void>;
}

/** Listens on `path`; connections are identified at once and served once `serve` is called. */
export async function openLocalEndpoint(opts: {
  path: string;
  callers: LocalCallers;
  localJobs: () => LocalJob[];
  log: Logger;
}): Promise<LocalEndpoint> {
  const { path, callers, log } = opts;
  await removeStale(path);
  let serving!: (injector: ConnectionInjector | undefined) => void;
  const injectorReady = new Promise<ConnectionInjector | undefined>((resolve) => {
    serving = resolve;
  });
  const admit = async (socket: Socket): Promise<void> => {
    const started = performance.now();
    const connection = await identify(socket, opts.localJobs, log);
    const injector = await injectorReady;
    if (socket.destroyed) return;
    if (!injector) {
      socket.destroy();
      return;
    }
    const marker = callers.add(connection);
    // grpc-js reports a connection's remoteAddress as the peer of its calls; a unix socket has
    // none of its own, so the marker is what the interceptor sees (see local-callers.ts).
    Object.defineProperty(socket, 'remoteAddress', { value: marker });
    socket.once('close', () => callers.remove(marker));
    log.debug({ connection, ms: Math.round(performance.now() - started) }, 'local endpoint connection');
    injector.injectConnection(socket);
  };
  const server: NetServer = createServer((socket) => {
    // No byte is read before the connection is known: the HTTP/2 session takes it from here.
    socket.pause();
    socket.on('error', (err) => log.debug({ err }, 'local endpoint connection error'));
    admit(socket).catch((err: unknown) => {
      log.error({ err }, 'local endpoint: could not admit a connection');
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'local endpoint error'));
  await chmod(path, SOCKET_MODE);
  log.info({ path }, 'local endpoint listening (jobs only)');
  let injector: ConnectionInjector | undefined;
  let closing: Promise<void> | undefined;
  return {
    path,
    serve(grpc) {
      injector ??= grpc.createConnectionInjector(ServerCredentials.createInsecure());
      serving(injector);
    },
    close() {
      closing ??= (async () => {
        // Not waiting for close's callback: it comes only once every connection has ended, and
        // those are the gRPC server's to end (its shutdown follows this).
        server.close();
        serving(undefined); // connections still waiting are dropped
        injector?.destroy();
        await unlink(path).catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** The job whose process holds the other end of `socket`, or why there is none. */
async function identify(socket: Socket, localJobs: () => LocalJob[], log: Logger): Promise<LocalConnection> {
  try {
    const peer = await peerInode(await socketInode(socket));
    if (peer === undefined) return { kind: 'stranger', why: 'the connecting process is gone' };
    const holders = await jobsHolding(peer, localJobs());
    if (holders.length === 0)
      return { kind: 'stranger', why: 'the connecting process belongs to no running job' };
    // One socket in two jobs' processes was passed between them: neither is the caller for sure.
    if (holders.length > 1)
      return {
        kind: 'stranger',
        why: `the connection is shared by jobs ${holders.map((j) => j.id).join(', ')}`,
      };
    const [job] = holders as [LocalJob];
    return { kind: 'job', job: job.id, owner: job.owner, dut: job.dut };
  } catch (err) {
    log.error({ err }, 'local endpoint: could not tell which job is connecting');
    return {
      kind: 'stranger',
      why: `the agent could not tell which job is connecting: ${(err as Error).message}`,
    };
  }
}

/** A socket left by an agent that died; the state directory's lock says none is running now. */
async function removeStale(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
