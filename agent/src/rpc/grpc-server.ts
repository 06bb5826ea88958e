/**
 * The agent's gRPC server: mutual TLS 1.3 only, the auth interceptor in front of every
 * service, health and reflection next to JobService, keepalive so dead clients are noticed.
 */

import tls from 'node:tls';
import { Server, ServerCredentials, type ServerInterceptor } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import { DutAccessServiceService } from '../../../protocol/gen/jiglet/v1/dut_access.js';
import { JigServiceService } from '../../../protocol/gen/jiglet/v1/jig.js';
import { LeaseServiceService } from '../../../protocol/gen/jiglet/v1/leases.js';
import { RecordServiceService } from '../../../protocol/gen/jiglet/v1/records.js';
import { WebServiceService } from '../../../protocol/gen/jiglet/v1/web.js';
import { JigletError } from '../../../protocol/src/errors.js';
import { JobServiceWire } from '../../../protocol/src/output-wire.js';
import { TLS13_SUITES } from '../../../protocol/src/tls-suites.js';
import { ImageServiceWire } from '../../../protocol/src/upload-wire.js';
import { authInterceptor } from '../auth/auth-interceptor.js';
import type { ImageCache } from '../images/image-cache.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import type { LocalCallers } from '../local/local-callers.js';
import type { LocalEndpoint } from '../local/local-endpoint.js';
import type { TimelineReader } from '../timeline/timeline-reader.js';
import type { WebConsole } from '../web/web-console.js';
import { dutAccessService } from './dut-access-service.js';
import { addHealthService } from './health-service.js';
import { imageService } from './image-service.js';
import { jigService } from './jig-service.js';
import { type FollowerRegistry, jobService } from './job-service.js';
import { leaseService } from './lease-service.js';
import { raiseReceiveWindow } from './receive-window.js';
import { recordService } from './record-service.js';
import { reflectionDefinition } from './reflection-files.js';
import { webService } from './web-service.js';

/** PEM material for the server side of mutual TLS. */
export interface ServerTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** A running gRPC server and what it owns. */
export interface GrpcServer {
  readonly port: number;
  readonly followers: FollowerRegistry;
  readonly health: HealthImplementation;
  /** Stops accepting calls, ends follower streams, and waits for in-flight calls (bounded). */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * A client that vanishes without a FIN or RST the agent reads (host gone, cable pulled, or an RST
 * that arrives while Node's HTTP/2 session is waiting on a write and not reading the socket) is
 * only noticed by a ping that goes unanswered. Its followers, socket and buffers live that long.
 */
const KEEPALIVE_TIME_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;

/**
 * What a client may have in flight to the agent per stream and per connection (receive-window.ts).
 * An upload pauses its call while a write is pending, so this is also the most an upload buffers.
 */
const RECEIVE_WINDOW_BYTES = 4 * 1024 * 1024;

/** Binds and starts the server on `host:port` (port 0 = any free port). */
export async function startGrpcServer(opts: {
  listen: string;
  tls: ServerTls;
  supervisor: Supervisor;
  jig: JigRuntime;
  images: ImageCache;
  leases: LeaseManager;
  /** The run record's timelines (RecordService). */
  records: TimelineReader;
  log: Logger;
  /** Run inside the auth interceptor, so they also see the calls it refuses (e.g. metrics). */
  interceptors?: ServerInterceptor[];
  /** The browser console, if the agent serves one (WebService issues its tickets). */
  web?: WebConsole;
  /** The unix socket for the agent's jobs (README, "The local endpoint") and its callers. */
  local?: { endpoint: LocalEndpoint; callers: LocalCallers };
}): Promise<GrpcServer> {
  const { log, supervisor } = opts;
  // grpc-js's createSsl has no minVersion nor cipher list; these process-wide defaults are what
  // its TLS server uses.
  tls.DEFAULT_MIN_VERSION = 'TLSv1.3';
  tls.DEFAULT_CIPHERS = TLS13_SUITES;
  const server = new Server({
    // grpc-js wraps each interceptor around those listed before it: a status the auth interceptor
    // sends passes through the ones listed ahead of it.
    interceptors: [
      ...(opts.interceptors ?? []),
      authInterceptor(log, {
        local: opts.local?.callers,
        dutOfJob: (id) => supervisor.get(id).record.spec.dut,
      }),
    ],
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
  });
  raiseReceiveWindow(server, RECEIVE_WINDOW_BYTES, log);
  const followers: FollowerRegistry = { active: new Set(), stalled: 0 };
  server.addService(JobServiceWire, jobService(opts.supervisor, log, followers, opts.leases, opts.jig));
  server.addService(
    JigServiceService,
    jigService(opts.jig, opts.images, opts.leases, log, followers, opts.supervisor),
  );
  server.addService(LeaseServiceService, leaseService(opts.jig, opts.leases, log));
  server.addService(DutAccessServiceService, dutAccessService(opts.jig, opts.leases, log));
  server.addService(ImageServiceWire, imageService(opts.images, log));
  server.addService(RecordServiceService, recordService(opts.records, log));
  server.addService(WebServiceService, webService(opts.jig, opts.web, log));
  const health = new HealthImplementation({
    '': 'SERVING',
    'jiglet.v1.JobService': 'SERVING',
    'jiglet.v1.JigService': 'SERVING',
    'jiglet.v1.ImageService': 'SERVING',
    'jiglet.v1.LeaseService': 'SERVING',
    'jiglet.v1.RecordService': 'SERVING',
    'jiglet.v1.WebService': 'SERVING',
  });
  addHealthService(server, health, log);
  // Reflection describes every service we serve, health included, so grpcurl can use all of them.
  new ReflectionService(reflectionDefinition()).addToServer(server);

  const creds = ServerCredentials.createSsl(
    opts.tls.ca,
    [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }],
    true,
  );
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.listen, creds, (err, boundPort) =>
      err ? reject(bindError(opts.listen, err)) : resolve(boundPort),
    );
  });
  log.info({ listen: opts.listen, port }, 'gRPC server listening (mutual TLS 1.3)');
  opts.local?.endpoint.serve(server);

  return {
    port,
    followers,
    health,
    async close(timeoutMs = 5000) {
      health.setStatus('', 'NOT_SERVING');
      await opts.local?.endpoint.close();
      for (const f of followers.active) f.abort();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/**
 * grpc-js says "No address added out of total 1 resolved errors: [listen EADDRINUSE …]"; a person
 * needs the address, the reason and the way out (the built-in jigs all default to 127.0.0.1:7411).
 */
function bindError(listen: string, err: Error): Error {
  const why = /EADDRINUSE/.test(err.message)
    ? 'the port is in use (another jiglet?); give this one another with --listen HOST:PORT, or --listen 127.0.0.1:0 for a free port (printed at start)'
    : /EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN/.test(err.message)
      ? 'no such address on this host; check --listen'
      : /EACCES/.test(err.message)
        ? 'a port below 1024 needs privileges; choose a higher one with --listen'
        : err.message;
  return new JigletError('JIGLET_E_UNAVAILABLE', `cannot listen on ${listen}: ${why}`, { cause: err });
}
