/**
 * The HTTP/2 receive window of the agent's gRPC server. Node opens every stream and connection
 * with a 64 KiB window, so a client sending to the agent (an image upload, a copy to a DUT) waits
 * for a WINDOW_UPDATE every 64 KiB: uploads ran at ~100 MB/s on loopback, less over a real
 * network (window / RTT). grpc-js 1.14 reads 'grpc-node.flow_control_window' on the client side
 * only; grpc-node PR #3058 adds it to the server, and this does the same until it lands: the
 * per-stream window in the SETTINGS each session starts with, and the connection's window.
 */
import type { Http2Server, Http2Session, Settings } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** The grpc-js internals this reaches (server.ts, 1.10–1.14). */
interface ServerInternals {
  commonServerOptions?: { settings?: Settings };
  createHttp2Server?: (credentials: unknown) => Http2Server;
}

/**
 * Makes `server` receive with a `bytes` window per stream and per connection; call before
 * bindAsync. If grpc-js no longer looks the way this expects, the server keeps Node's default
 * (slower uploads, nothing else) and the log says so.
 */
export function raiseReceiveWindow(server: Server, bytes: number, log: Logger): void {
  const internals = server as unknown as ServerInternals;
  const create = internals.createHttp2Server;
  const common = internals.commonServerOptions;
  if (typeof create !== 'function' || typeof common !== 'object' || common === null) {
    log.warn(
      'this grpc-js has no known way to set the server receive window: uploads keep the 64 KiB window',
    );
    return;
  }
  common.settings = { ...common.settings, initialWindowSize: bytes };
  internals.createHttp2Server = (credentials) => {
    const http2Server = create.call(server, credentials);
    http2Server.on('session', (session: Http2Session) => session.setLocalWindowSize(bytes));
    return http2Server;
  };
}
