/**
 * Services: processes the jig needs beside the agent (a virtual DUT, ser2net, a PDU daemon),
 * named in the config file and run as agent-owned jobs — supervised, logged, restarted — so the
 * agent brings a whole jig up by itself. Each may name a line that says it is ready; the agent
 * serves no requests until every service has said it.
 */
import type { Logger } from 'pino';
import { JigletError } from '../../../protocol/src/errors.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';
import { followLog } from '../output/follow-log.js';
import { JobKeeper } from './job-keeper.js';
import { compilePattern, LineMatcher } from './line-matcher.js';

/** One service as the config file describes it. */
export interface ServiceConfig {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Working directory (the config file's directory when not given). */
  cwd: string;
  /** RE2 pattern of the output line that says the service is ready. */
  readyPattern?: string;
  readyTimeoutMs: number;
}

/** Running services; close() stops their restarts (the supervisor stops the jobs). */
export interface Services {
  readonly keepers: ReadonlyMap<string, JobKeeper>;
  close(): void;
}

/** Starts every service and waits until each is ready; throws naming the one that is not. */
export async function startServices(
  configs: readonly ServiceConfig[],
  supervisor: Supervisor,
  log: Logger,
): Promise<Services> {
  const keepers = new Map<string, JobKeeper>();
  const services: Services = {
    keepers,
    close() {
      for (const keeper of keepers.values()) keeper.close();
    },
  };
  try {
    await Promise.all(
      configs.map(async (config) => {
        const spec: JobSpecInput = {
          command: config.command,
          args: config.args,
          env: config.env,
          cwd: config.cwd,
          dut: '',
          limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
          timeoutMs: 0,
          stdin: false,
        };
        const keeper = new JobKeeper(
          `service ${config.name}`,
          spec,
          supervisor,
          log.child({ service: config.name }),
        );
        keepers.set(config.name, keeper);
        const job = await keeper.start();
        if (config.readyPattern) await waitReady(config, job);
      }),
    );
  } catch (err) {
    services.close();
    throw err;
  }
  return services;
}

/** Reads the service's output until the ready line, its end, or the deadline. */
async function waitReady(config: ServiceConfig, job: JobView): Promise<void> {
  const matcher = new LineMatcher(compilePattern(config.readyPattern!, false));
  const deadline = AbortSignal.timeout(config.readyTimeoutMs);
  const found = new AbortController();
  const signal = AbortSignal.any([deadline, found.signal]);
  await followLog({
    log: job.output(),
    offset: 0,
    follow: true,
    signal,
    sink: {
      send(piece) {
        if (matcher.push(piece.data, piece.offset)) found.abort();
        return true;
      },
      drained: async () => {},
    },
  });
  if (found.signal.aborted) return;
  const seen = matcher.lastLines.slice(-5).join(' | ');
  const why = deadline.aborted
    ? `did not print a line matching ${JSON.stringify(config.readyPattern)} within ${config.readyTimeoutMs} ms`
    : `ended (${job.record.state}${job.record.exitCode !== undefined ? `, exit code ${job.record.exitCode}` : ''}${job.record.error ? `: ${job.record.error}` : ''}) before it was ready`;
  throw new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `service ${config.name} ${why}; its last output: ${seen || '(none)'} (job ${job.record.id})`,
  );
}
