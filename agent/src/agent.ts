/**
 * The composition root of jiglet: state directory, containment, supervisor and gRPC server,
 * started in order and stopped in reverse. Tests start agents in-process through this.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { JigDescription } from '../../jig-drivers/src/jig-description.js';
import { AgentEvents } from './events/agent-events.js';
import { ImageCache } from './images/image-cache.js';
import { defaultJigDriverCommand, type JigDriverCommand } from './jig/jig-driver-command.js';
import { JigRuntime } from './jig/jig-runtime.js';
import type { ServiceConfig } from './jig/services.js';
import { detectContainment } from './jobs/containment.js';
import { JobRecords } from './jobs/job-records.js';
import { defaultJobUserPolicy, type JobUserPolicy, JobUsers } from './jobs/job-users.js';
import { Retention } from './jobs/retention.js';
import { DEFAULT_RETENTION, type RetentionPolicy } from './jobs/retention-policy.js';
import { leaseSpans } from './jobs/retention-spans.js';
import { DEFAULT_GRACE_MS, Supervisor } from './jobs/supervisor.js';
import { LeaseDeviceAccess } from './leases/lease-device-access.js';
import { LeaseManager } from './leases/lease-manager.js';
import { writeJigctlShim } from './local/jigctl-shim.js';
import { LocalCallers } from './local/local-callers.js';
import { LOCAL_SOCKET, type LocalEndpoint, openLocalEndpoint } from './local/local-endpoint.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { type MetricsServer, startMetricsServer } from './metrics/metrics-server.js';
import { reflectDutHealth } from './rpc/dut-serving-status.js';
import { type GrpcServer, type ServerTls, startGrpcServer } from './rpc/grpc-server.js';
import { prepareStateDir } from './state/state-dir-access.js';
import { lockStateDir } from './state/state-lock.js';
import { RunRecorder } from './timeline/run-recorder.js';
import { TimelineReader } from './timeline/timeline-reader.js';
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
  /** The background pruner of finished jobs. */
  readonly retention: Retention;
  /** Port of the Prometheus listener, when the agent was started with one. */
  readonly metricsPort: number | undefined;
  /** The browser console, when the agent was started with one. */
  readonly web: WebConsole | undefined;
  /** The unix socket jobs call back on (their JIGLET_ADDR is unix:<this>), if served. */
  readonly localPath: string | undefined;
  /** Graceful stop: refuse new calls, stop jobs, flush records, release the state dir. */
  stop(graceMs?: number): Promise<void>;
}

export { readServerTls } from './auth/server-tls-dir.js';

/** Longest unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** Where the local endpoint listens, or undefined (logged) when it cannot or should not. */
function localSocketPath(stateDir: string, wanted: boolean, log: Logger): string | undefined {
  if (!wanted) return undefined;
  const path = join(stateDir, LOCAL_SOCKET);
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES) return path;
  log.warn(
    { path },
    `the state directory's path is too long for a unix socket (over ${MAX_SOCKET_PATH_BYTES} bytes): jobs get no local endpoint; move the state directory`,
  );
  return undefined;
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
  /** How long and how much of finished jobs to keep (each key defaults to DEFAULT_RETENTION's). */
  retention?: Partial<RetentionPolicy>;
  /** HOST:PORT of the Prometheus listener (plain HTTP); none without it. */
  metricsListen?: string;
  /** HOST:PORT of the browser console (HTTPS with the server certificate); none without it. */
  webListen?: string;
  /** How long a browser console ticket is good for (default 60 s). */
  webTicketTtlMs?: number;
  /** Which uid users' jobs run as (default: a uid per owner when the agent is root). */
  jobUsers?: JobUserPolicy;
  /** Serve jobs on `<stateDir>/jiglet.sock` with jigctl on their PATH (default true). */
  localEndpoint?: boolean;
}): Promise<Agent> {
  const { log, stateDir } = opts;
  const { workRoot } = prepareStateDir(stateDir, log);
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
    const events = new AgentEvents((err, event) =>
      log.error({ err, event: event.kind }, 'an agent event listener failed'),
    );
    const jobUserPolicy = opts.jobUsers ?? defaultJobUserPolicy();
    if (jobUserPolicy.mode !== 'per-owner')
      log.warn(
        { jobUsers: jobUserPolicy },
        jobUserPolicy.mode === 'single'
          ? "users' jobs share one uid: owners are kept from the agent, not from each other"
          : "users' jobs run as the agent itself: any job can read the state directory",
      );
    const jobUsers = new JobUsers({
      stateDir,
      policy: jobUserPolicy,
      onCorrupt: (err) => log.error({ err }, 'job-users.json is unreadable; owners get new uids'),
    });
    // Created before the supervisor, which waits on it; it follows leases once they exist.
    let deviceAccess: LeaseDeviceAccess | undefined;
    const records = new JobRecords(stateDir);
    const localPath = localSocketPath(stateDir, opts.localEndpoint ?? true, log);
    const jobPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
    const baseEnv: Record<string, string> = { PATH: jobPath, LANG: 'C.UTF-8' };
    if (localPath !== undefined) {
      // Jobs reach their DUT with `jigctl …` and no certificate (README, "The local endpoint").
      baseEnv.PATH = `${await writeJigctlShim(stateDir)}:${jobPath}`;
      baseEnv.JIGLET_ADDR = `unix:${localPath}`;
    }
    const supervisor = new Supervisor({
      events,
      users: jobUsers,
      beforeUserJob: (dut) => deviceAccess?.settled(dut) ?? Promise.resolve(),
      workRoot,
      records,
      containment,
      log,
      baseEnv,
    });
    await supervisor.recover();
    // Listening before the jig starts: a health check due at start calls back at once.
    const localCallers = new LocalCallers((job) => supervisor.localGrantOf(job));
    const local: LocalEndpoint | undefined =
      localPath === undefined
        ? undefined
        : await openLocalEndpoint({
            path: localPath,
            callers: localCallers,
            localJobs: () => supervisor.localJobs(),
            log,
          });
    const images = new ImageCache({ stateDir, limitBytes: opts.imageCacheBytes, log });
    const leases = new LeaseManager({ stateDir, maxLifetimeMs: opts.leaseMaxLifetimeMs, log });
    deviceAccess = new LeaseDeviceAccess({ duts: opts.jig?.duts ?? [], users: jobUsers, leases, log });
    deviceAccess.start();
    // Listening before the jig starts: its captures and a lease that expired while the agent was
    // down are part of the record.
    const policy: RetentionPolicy = { ...DEFAULT_RETENTION, ...opts.retention };
    const recorder = new RunRecorder({
      stateDir,
      events,
      leases,
      supervisor,
      log,
      dutJournalBytes: policy.journalMaxBytes,
      leaseIndexBytes: Math.max(64 * 1024, Math.floor(policy.journalMaxBytes / 4)),
    });
    let jig: JigRuntime;
    try {
      jig = await JigRuntime.start({
        serialLogMaxBytes: policy.serialLogMaxBytes,
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
      await local?.close();
      leases.close();
      await deviceAccess?.close();
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
        local: local && { endpoint: local, callers: localCallers },
      });
    } catch (err) {
      await web?.close();
      await local?.close();
      leases.close();
      await deviceAccess?.close();
      await jig.close();
      await supervisor.shutdown(1000);
      await recorder.close();
      await containment.removeNamespace().catch(() => false);
      throw err;
    }
    // Started last: a failed start has no pass to wait for. Its first pass runs at once.
    const retention = new Retention({
      supervisor,
      records,
      policy,
      events,
      log,
      workDirOf: (id) => join(workRoot, id),
      leaseSpans: () =>
        leaseSpans(
          { held: () => leases.list(), indexLines: () => recorder.leaseIndex.lines() },
          Date.now() - policy.userJobMaxAgeMs,
        ),
    });
    metrics.watch({
      events,
      supervisor,
      jig,
      leases,
      followers: grpc.followers,
      retention,
      imageBytes: () => images.usedBytes,
      stateDir,
    });
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
      retention,
      metricsPort: metricsServer?.port,
      web,
      localPath: local?.path,
      stop(graceMs = DEFAULT_GRACE_MS) {
        stopping ??= (async () => {
          log.info('agent stopping');
          stopDutHealth();
          // No pass deletes folders while jobs are stopped and the records flushed.
          await retention.close();
          // Browser sessions end with the agent; their sockets let go of leases and consoles first.
          await web?.close();
          // Leases stay saved with their expiry; a restarted agent honours them.
          leases.close();
          // Grants stay with leases that stay: a restarted agent takes back only what has ended.
          await deviceAccess?.close();
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
