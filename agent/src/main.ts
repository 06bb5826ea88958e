#!/usr/bin/env node
/** `jiglet`: the agent's command line. */
import { type Logger, pino } from 'pino';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { JigletError } from '../../protocol/src/errors.js';
import { readServerTls, startAgent } from './agent.js';
import { loadAgentConfig } from './config.js';
import { defaultLogFormat, type LogFormat, logDestination } from './log-format.js';
import { containProcessFailures } from './process-failures.js';

/** Exit code for a configuration problem (sysexits EX_CONFIG). */
const EXIT_CONFIG = 78;

/**
 * The longest a graceful stop may take before the process exits anyway. Each job's stop is
 * bounded by itself (grace + kill + margin, see job-stop.ts); this catches anything else that
 * would hang, inside systemd's default 90 s TimeoutStopSec.
 */
const SHUTDOWN_DEADLINE_MS = 60_000;

/** The first SIGTERM or SIGINT stops gracefully, then exits 0 (1 if stopping failed or hung). */
function stopOnSignal(stop: () => Promise<void>, log: Logger): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'shutdown requested');
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    setTimeout(() => {
      log.error(`shutdown did not finish within ${SHUTDOWN_DEADLINE_MS} ms; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function serve(flags: {
  config?: string;
  listen?: string;
  stateDir?: string;
  tlsDir?: string;
  logLevel?: string;
  logFormat?: LogFormat;
  metrics?: string;
  web?: string;
  allowCaKey?: boolean;
}): Promise<void> {
  const config = await loadAgentConfig(flags);
  // Users' jobs run as other uids: every file the agent writes from here on is its own alone
  // (state-dir-access.ts). Jobs get 022 back in their shim.
  process.umask(0o077);
  const log = pino(
    { level: config.logLevel, base: { pid: process.pid } },
    logDestination(flags.logFormat ?? defaultLogFormat(process.stderr)),
  );
  // The last line only: failures are contained where they happen (see process-failures.ts).
  containProcessFailures(log);
  if (config.jig) log.info({ duts: config.jig.duts.map((d) => d.name) }, 'jig description loaded');
  const agent = await startAgent({
    listen: config.listen,
    stateDir: config.stateDir,
    tls: readServerTls(config.tlsDir, { allowCaKey: flags.allowCaKey, log }),
    log,
    jig: config.jig,
    services: config.services,
    imageCacheBytes: config.imageCacheBytes,
    leaseMaxLifetimeMs: config.leaseMaxLifetimeMs,
    retention: config.retention,
    metricsListen: config.metrics,
    webListen: config.web,
    jobUsers: config.jobUsers,
  });
  // Before the "listening" line: a starter that reads stdout up to that line may close the pipe
  // then (fixtures/test-support/jiglet-process.ts does), and a later write would die of EPIPE.
  if (config.web && agent.web)
    process.stdout.write(
      `jiglet web console on https://${config.web.replace(/:\d+$/, '')}:${agent.web.port}\n`,
    );
  // Printed on stdout so scripts (and tests) can learn the port when listening on :0.
  process.stdout.write(`jiglet listening on ${config.listen.replace(/:\d+$/, '')}:${agent.port}\n`);
  if (config.metrics && agent.metricsPort !== undefined)
    process.stdout.write(`jiglet metrics on ${config.metrics.replace(/:\d+$/, '')}:${agent.metricsPort}\n`);
  stopOnSignal(() => agent.stop(), log);
}

async function queueWorker(flags: {
  db: string;
  server?: string;
  ca?: string;
  cert?: string;
  key?: string;
  name?: string;
  heartbeat?: string;
  expiry?: string;
  leaseTtl?: string;
  heartbeatMs?: number;
  expiryMs?: number;
  leaseTtlMs?: number;
  metrics?: string;
  logLevel?: string;
  logFormat?: LogFormat;
}): Promise<void> {
  // The worker is a gRPC client of an agent, so it lives in client/; this is only its launcher
  // (the one place agent/ reaches into client/, see DESIGN.md). grpc-js sets the TLS ServerName
  // even to an IP address, and Node would print DEP0123 for it: noise an operator cannot act on.
  process.noDeprecation = true;
  const { runQueueWorker } = await import('../../client/src/queue/run-queue-worker.js');
  const { parseDuration } = await import('../../client/src/cli/parse-units.js');
  // Durations as people type them (2s, 30s); the older -ms flags still count when these are absent.
  const ms = (flag: string, text: string | undefined, legacy: number | undefined) =>
    text === undefined ? legacy : parseDuration(flag, text);
  const timing = {
    heartbeatMs: ms('--heartbeat', flags.heartbeat, flags.heartbeatMs),
    expiryMs: ms('--expiry', flags.expiry, flags.expiryMs),
    leaseTtlMs: ms('--lease-ttl', flags.leaseTtl, flags.leaseTtlMs),
  };
  const log = pino(
    { level: flags.logLevel ?? 'info', base: { pid: process.pid } },
    logDestination(flags.logFormat ?? defaultLogFormat(process.stderr)),
  );
  containProcessFailures(log);
  const { worker, stop, metricsPort } = await runQueueWorker({ ...flags, ...timing }, (line) =>
    log.warn(line),
  );
  process.stdout.write(`jiglet queue-worker ${worker.name} claiming from the queue\n`);
  if (flags.metrics && metricsPort !== undefined)
    process.stdout.write(
      `jiglet queue-worker metrics on ${flags.metrics.replace(/:\d+$/, '')}:${metricsPort}\n`,
    );
  stopOnSignal(stop, log);
}

await yargs(hideBin(process.argv))
  .scriptName('jiglet')
  .strict()
  .command(
    'serve',
    'run the agent',
    (y) =>
      y
        .option('config', { type: 'string', describe: 'YAML config / jig description' })
        .option('listen', { type: 'string', describe: 'HOST:PORT to listen on (default 127.0.0.1:7411)' })
        .option('state-dir', { type: 'string', describe: 'job records and logs (default /var/lib/jiglet)' })
        .option('tls-dir', {
          type: 'string',
          describe: 'holds ca.crt server.crt server.key, never the CA key (default /etc/jiglet/tls)',
        })
        .option('allow-ca-key', {
          type: 'boolean',
          describe: "start even with the CA's private key in the TLS directory (throwaway demos only)",
        })
        .option('log-level', { type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error'] })
        .option('log-format', {
          choices: ['json', 'pretty'] as const,
          describe: 'log lines as JSON or readable text (default: readable on a terminal, JSON otherwise)',
        })
        .option('metrics', {
          type: 'string',
          describe: 'HOST:PORT for Prometheus to scrape GET /metrics (plain HTTP; off by default)',
        })
        .option('web', {
          type: 'string',
          describe: 'HOST:PORT for the browser console (HTTPS, server certificate; off by default)',
        }),
    (argv) => serve(argv),
  )
  .command(
    'queue-worker',
    "claim fleet-queue jobs for this agent's DUTs and run them through it",
    (y) =>
      y
        .option('db', {
          type: 'string',
          demandOption: true,
          describe: 'queue database: postgres://… or pglite:DIR (embedded, served to jigctl on DIR)',
        })
        .option('server', { type: 'string', describe: 'the agent, HOST:PORT (env JIGLET_ADDR)' })
        .option('ca', { type: 'string', describe: 'CA certificate (env JIGLET_CA)' })
        .option('cert', { type: 'string', describe: "the worker's client certificate (env JIGLET_CERT)" })
        .option('key', { type: 'string', describe: "the worker's key (env JIGLET_KEY)" })
        .option('name', { type: 'string', describe: "this worker's name in the queue (default host:pid)" })
        .option('heartbeat', { type: 'string', describe: 'heartbeat period (default 2s)' })
        .option('expiry', {
          type: 'string',
          describe: 'requeue after this long without a heartbeat (default 30s)',
        })
        .option('lease-ttl', { type: 'string', describe: 'TTL of the DUT leases it holds (default 15s)' })
        .option('heartbeat-ms', { type: 'number', hidden: true })
        .option('expiry-ms', { type: 'number', hidden: true })
        .option('lease-ttl-ms', { type: 'number', hidden: true })
        .option('log-level', { type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error'] })
        .option('log-format', {
          choices: ['json', 'pretty'] as const,
          describe: 'log lines as JSON or readable text (default: readable on a terminal, JSON otherwise)',
        })
        .option('metrics', {
          type: 'string',
          describe: 'HOST:PORT for Prometheus to scrape the queue depth, GET /metrics (plain HTTP)',
        }),
    (argv) => queueWorker(argv),
  )
  .demandCommand(1, 'name a command: jiglet serve | jiglet queue-worker')
  .fail((msg, err) => {
    if (err instanceof JigletError) {
      process.stderr.write(`jiglet: ${err.message}\n`);
      process.exit(err.code === 'JIGLET_E_INVALID_ARGUMENT' ? EXIT_CONFIG : 1);
    }
    if (err) {
      process.stderr.write(`jiglet: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`jiglet: ${msg}\n(see jiglet --help)\n`);
    process.exit(2);
  })
  .help()
  .parseAsync();
