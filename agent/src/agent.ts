/**
 * The composition root of jiglet: state directory, containment, supervisor and gRPC server,
 * started in order and stopped in reverse. Tests start agents in-process through this.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { JigDescription } from '../../jig-drivers/src/jig-description.js';
import { JigletError } from '../../protocol/src/errors.js';
import { AgentEvents } from './events/agent-events.js';
import { ImageCache } from './images/image-cache.js';
import { defaultJigDriverCommand, type JigDriverCommand } from './jig/jig-driver-command.js';
import { JigRuntime } from './jig/jig-runtime.js';
import type { ServiceConfig } from './jig/services.js';
import { detectContainment } from './jobs/containment.js';
import { JobRecords } from './jobs/job-records.js';
import { DEFAULT_GRACE_MS, Supervisor } from './jobs/supervisor.js';
import { LeaseManager } from './leases/lease-manager.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { reflectDutHealth } from './metrics/dut-serving-status.js';
import { type MetricsServer, startMetricsServer } from './metrics/metrics-server.js';
import { RunRecorder } from './record/run-recorder.js';
import { TimelineReader } from './record/timeline-reader.js';
import { type GrpcServer, type ServerTls, startGrpcServer } from './rpc/grpc-server.js';
import { lockStateDir } from './state-lock.js';
import { startWebConsole, type WebConsole } from './web/web-console.js';

/** A running agent. */
export interface Agent {
  readonly port: number;
  readonly supervisor: Supervisor;
  readonly jig: JigRuntime;
  readonly images: ImageCache;
  readonly leases: LeaseManager;
  readonly grpc: GrpcServer;
  readonly events: AgentEvents;
  /** The run record: per-DUT journals of what happened, for timelines and reports. */
  readonly recorder: RunRecorder;
  readonly metrics: AgentMetrics;
  /** Port of the Prometheus listener, when the agent was started with one. */
  readonly metricsPort: number | undefined;
  /** The browser console, when the agent was started with one. */
  readonly web: WebConsole | undefined;
  /** Graceful stop: refuse new calls, stop jobs, flush records, release the state dir. */
  stop(graceMs?: number): Promise<void>;
}

/** Reads ca.crt, server.crt and server.key from a TLS directory. */
export function readServerTls(tlsDir: string): ServerTls {
  const read = (name: string): Buffer => {
    try {
      return readFileSync(join(tlsDir, name));
    } catch (err) {
      throw new JigletError(
        'JIGLET_E_INVALID_ARGUMENT',
        `cannot read ${join(tlsDir, name)} (${(err as NodeJS.ErrnoException).code}); create one with: jigctl certs init --dir ${tlsDir}`,
      );
    }
  };
  return { ca: read('ca.crt'), cert: read('server.crt'), key: read('server.key') };
}

/** Starts an agent. */
export async function startAgent(opts: {
  listen: string;
  stateDir: string;
  tls: ServerTls;
  log: Logger;
  /** The DUTs to serve; none without it. */
  jig?: JigDescription;
  /** Processes to run beside the agent (started, and ready, before the DUTs' captures). */
  services?: readonly ServiceConfig[];
  /** How to run `jig-driver` (default: the compiled one next to this agent). */
  jigDriver?: JigDriverCommand;
  /** Size limit of the image cache (default 20 GiB). */
  imageCacheBytes?: number;
  /** Hard maximum of a lease, however often it is renewed (default a week). */
  leaseMaxLifetimeMs?: number;
  /** HOST:PORT of the Prometheus listener (plain HTTP); none without it. */
  metricsListen?: string;
  /** HOST:PORT of the browser console (HTTPS with the server certificate); none without it. */
  webListen?: string;
  /** How long a browser console ticket is good for (default 60 s). */
  webTicketTtlMs?: number;
}): Promise<Agent> {
  const { log, stateDir } = opts;
  mkdirSync(stateDir, { recursive: true });
  const unlock = lockStateDir(stateDir);
  let metricsServer: MetricsServer | undefined;
  try {
    const metrics = new AgentMetrics(log, { processMetrics: opts.metricsListen !== undefined });
    // Bound before anything starts: a metrics port in use stops the agent with nothing to undo.
    if (opts.metricsListen)
      metricsServer = await startMetricsServer(opts.metricsListen, metrics.registry, log);
    const namespace = `jiglet-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`;
    const containment = await detectContainment({ namespace, log: (msg) => log.warn(msg) });
    log.info({ containment: containment.mode }, 'job containment');
    const events = new AgentEvents();
    const supervisor = new Supervisor({
      events,
      records: new JobRecords(stateDir),
      containment,
      log,
      baseEnv: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
    });
    await supervisor.recover();
    const images = new ImageCache({ stateDir, limitBytes: opts.imageCacheBytes, log });
    const leases = new LeaseManager({ stateDir, maxLifetimeMs: opts.leaseMaxLifetimeMs, log });
    // Listening before the jig starts: its captures and a lease that expired while the agent was
    // down are part of the record.
    const recorder = new RunRecorder({ stateDir, events, leases, supervisor, log });
    let jig: JigRuntime;
    try {
      jig = await JigRuntime.start({
        jig: opts.jig,
        services: opts.services ?? [],
        supervisor,
        jigDriver: opts.jigDriver ?? defaultJigDriverCommand(),
        images,
        leases,
        stateDir,
        log,
        events,
      });
    } catch (err) {
      leases.close();
      await supervisor.shutdown(1000);
      await recorder.close();
      await containment.removeNamespace().catch(() => false);
      throw err;
    }
    recorder.attachJig(jig);
    let grpc: GrpcServer;
    let web: WebConsole | undefined;
    try {
      if (opts.webListen) {
        web = await startWebConsole({
          listen: opts.webListen,
          tls: opts.tls,
          jig,
          leases,
          log,
          ticketTtlMs: opts.webTicketTtlMs,
        });
      }
      grpc = await startGrpcServer({
        listen: opts.listen,
        tls: opts.tls,
        supervisor,
        jig,
        images,
        leases,
        records: new TimelineReader({ recorder, supervisor, leases }),
        log,
        interceptors: [metrics.rpcInterceptor],
        web,
      });
    } catch (err) {
      await web?.close();
      leases.close();
      await jig.close();
      await supervisor.shutdown(1000);
      await recorder.close();
      await containment.removeNamespace().catch(() => false);
      throw err;
    }
    metrics.watch({ events, supervisor, jig, leases, followers: grpc.followers });
    const stopDutHealth = reflectDutHealth({ jig, events, health: grpc.health });
    let stopping: Promise<void> | undefined;
    return {
      port: grpc.port,
      supervisor,
      jig,
      images,
      leases,
      grpc,
      events,
      recorder,
      metrics,
      metricsPort: metricsServer?.port,
      web,
      stop(graceMs = DEFAULT_GRACE_MS) {
        stopping ??= (async () => {
          log.info('agent stopping');
          stopDutHealth();
          // Browser sessions end with the agent; their sockets let go of leases and consoles first.
          await web?.close();
          // Leases stay saved with their expiry; a restarted agent honours them.
          leases.close();
          await jig.close();
          await supervisor.shutdown(graceMs);
          // After the shutdown, so the jobs it stopped are recorded; every listener goes with it.
          await recorder.close();
          await grpc.close();
          metrics.close();
          await metricsServer?.close();
          // Leaves nothing behind in the cgroup hierarchies once no job cgroup remains.
          try {
            if (!(await containment.removeNamespace()))
              log.warn('job cgroups remain; the cgroup namespace was kept');
          } catch (err) {
            log.warn({ err }, 'could not remove the cgroup namespace');
          }
          unlock();
          log.info('agent stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await metricsServer?.close();
    unlock();
    throw err;
  }
}
