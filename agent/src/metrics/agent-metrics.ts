/**
 * The agent's Prometheus metrics, on a registry of its own (never prom-client's global one: two
 * agents in one process, as in the tests, must not share counters). Gauges are read from their
 * sources at scrape time, so they cannot drift; counters and the histogram follow the event bus.
 */
import type { ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { AgentEvent, AgentEvents } from '../events/agent-events.js';
import type { HealthState } from '../jig/dut-health-file.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import { isFinal, type JobStateName } from '../jobs/job-state.js';
import type { Retention } from '../jobs/retention.js';
import type { Supervisor } from '../jobs/supervisor.js';
import type { LeaseManager } from '../leases/lease-manager.js';
import type { FollowerRegistry } from '../rpc/job-service.js';
import { flashThroughput } from './flash-throughput.js';
import { registerLiveHeap } from './live-heap.js';
import { rpcErrorInterceptor } from './rpc-errors.js';
import { countSerialBytes } from './serial-bytes.js';
import { registerStateSize } from './state-size.js';

/** Job durations run from a `true` (milliseconds) to a soak test (a day). */
const DURATION_BUCKETS_S = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 14_400, 86_400,
];
const HEALTH_STATES: readonly HealthState[] = ['good', 'bad', 'maintenance'];

/** What the metrics read from; all of it exists once the gRPC server runs. */
export interface MetricSources {
  events: AgentEvents;
  supervisor: Supervisor;
  jig: JigRuntime;
  leases: LeaseManager;
  followers: FollowerRegistry;
  /** For the state-size metrics. */
  retention?: Retention;
  imageBytes?: () => number;
  stateDir?: string;
}

/** Every metric of one agent. */
export class AgentMetrics {
  readonly registry = new Registry();
  /** Counts RPC errors; pass it to the gRPC server before it starts. */
  readonly rpcInterceptor: ServerInterceptor;
  readonly #log: Logger;
  #sources: MetricSources | undefined;
  #stops: (() => void)[] = [];
  /** Output of the jobs that ended while watched; running jobs are added at scrape time. */
  #endedOutputBytes = 0;
  readonly #durations: Histogram<'state'>;
  readonly #serialBytes: Counter<'dut'>;
  readonly #flashRate: Gauge<'dut'>;
  readonly #flashBytes: Counter<'dut'>;

  /**
   * `processMetrics` adds prom-client's process_* and nodejs_* metrics (unprefixed, so stock
   * dashboards work). Their event-loop monitor and GC observer can never be stopped, so only an
   * agent that serves metrics asks for them: once per process in production, not once per test agent.
   */
  constructor(log: Logger, opts: { processMetrics: boolean }) {
    this.#log = log.child({ part: 'metrics' });
    const registers = [this.registry];
    if (opts.processMetrics) {
      collectDefaultMetrics({ register: this.registry });
      this.#stops.push(registerLiveHeap(registers));
    }
    const sources = (): MetricSources | undefined => this.#sources;
    registerStateSize(registers, sources);
    new Gauge({
      name: 'jiglet_jobs',
      help: 'Jobs the agent knows, by state (earlier runs included)',
      labelNames: ['state'],
      registers,
      collect() {
        const counts: Record<JobStateName, number> = {
          pending: 0,
          running: 0,
          exited: 0,
          failed: 0,
          stopped: 0,
          lost: 0,
        };
        for (const [state, n] of sources()?.supervisor.index.countByState() ?? []) counts[state] = n;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    this.#durations = new Histogram({
      name: 'jiglet_job_duration_seconds',
      help: 'Wall time of jobs that ended, by final state',
      labelNames: ['state'],
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    const ended = (): number => this.#endedOutputBytes;
    new Counter({
      name: 'jiglet_job_output_bytes_total',
      help: 'Bytes of job output (stdout and stderr) written since the agent started',
      registers,
      collect() {
        let live = 0;
        for (const job of sources()?.supervisor.list() ?? []) {
          if (!isFinal(job.record.state)) live += job.outputBytes();
        }
        this.reset();
        this.inc(ended() + live);
      },
    });
    new Gauge({
      name: 'jiglet_followers',
      help: 'Open output, serial and console streams',
      registers,
      collect() {
        this.set(sources()?.followers.active.size ?? 0);
      },
    });
    new Gauge({
      name: 'jiglet_leases_held',
      help: 'Leases held, by DUT (0 or 1)',
      labelNames: ['dut'],
      registers,
      collect() {
        const s = sources();
        if (!s) return;
        const held = new Set(s.leases.list().map((l) => l.dut));
        for (const dut of s.jig.list()) this.set({ dut: dut.dut.name }, held.has(dut.dut.name) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'jiglet_lease_claims_waiting',
      help: 'Claims waiting for a DUT (a claim by labels waits for each matching DUT)',
      labelNames: ['dut'],
      registers,
      collect() {
        const s = sources();
        for (const dut of s?.jig.list() ?? []) {
          this.set({ dut: dut.dut.name }, s!.leases.queue(dut.dut.name).waiting);
        }
      },
    });
    new Gauge({
      name: 'jiglet_dut_health',
      help: 'DUT health: 1 for the state the DUT is in, 0 for the others',
      labelNames: ['dut', 'state'],
      registers,
      collect() {
        const s = sources();
        for (const dut of s?.jig.list() ?? []) {
          const name = dut.dut.name;
          const now = s!.jig.health(name).record.state;
          for (const state of HEALTH_STATES) this.set({ dut: name, state }, state === now ? 1 : 0);
        }
      },
    });
    this.#flashRate = new Gauge({
      name: 'jiglet_flash_bytes_per_second',
      help: 'Image bytes per second of the last completed flash of each DUT, over the whole flash job',
      labelNames: ['dut'],
      registers,
    });
    this.#flashBytes = new Counter({
      name: 'jiglet_flash_bytes_total',
      help: 'Image bytes (decompressed) put on DUT media by completed flashes',
      labelNames: ['dut'],
      registers,
    });
    this.#serialBytes = new Counter({
      name: 'jiglet_serial_bytes_total',
      help: 'Bytes received from each DUT serial console',
      labelNames: ['dut'],
      registers,
    });
    this.rpcInterceptor = rpcErrorInterceptor(
      new Counter({
        name: 'jiglet_rpc_errors_total',
        help: 'RPCs that ended with a non-OK status, by method and gRPC status name',
        labelNames: ['method', 'code'],
        registers,
      }),
    );
  }

  /** Starts reading `sources`; until then only process and RPC metrics have values. */
  watch(sources: MetricSources): void {
    this.#sources = sources;
    this.#stops.push(
      sources.events.subscribe((event) => {
        // The bus calls listeners inside the supervisor's state change: a metrics bug must not break a job.
        try {
          this.#onEvent(event);
        } catch (err) {
          this.#log.warn({ err, event: event.kind }, 'could not count an event');
        }
      }),
    );
    this.#stops.push(countSerialBytes(sources.jig.list(), this.#serialBytes));
  }

  /** Stops listening to the agent (the registry still answers). Idempotent. */
  close(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }

  #onEvent(event: AgentEvent): void {
    const supervisor = this.#sources?.supervisor;
    if (!supervisor) return;
    if (event.kind === 'job' && isFinal(event.state)) {
      const job = supervisor.get(event.job);
      const { startedAt, createdAt, endedAt } = job.record;
      // A job that failed to start never ran: its time is from creation to the failure.
      this.#durations.observe(
        { state: event.state },
        ((endedAt ?? event.at) - (startedAt ?? createdAt)) / 1000,
      );
      this.#endedOutputBytes += job.outputBytes();
    } else if (event.kind === 'flash' && event.phase === 'done') {
      flashThroughput(supervisor.get(event.job)).then(
        (done) => {
          if (!done) return;
          this.#flashRate.set({ dut: event.dut }, done.bytesPerSecond);
          this.#flashBytes.inc({ dut: event.dut }, done.bytes);
        },
        (err: unknown) => this.#log.warn({ err, job: event.job }, 'could not read the flash result'),
      );
    }
  }
}
