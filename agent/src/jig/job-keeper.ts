/**
 * Keeps one agent-owned job running: starts it, and when it ends starts it again after a pause
 * that doubles on quick failures (a missing adapter driver must not spin the host). Serial
 * captures and configured services both live on this.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';

/** Owner of the jobs the agent runs for itself; `@` cannot appear in a certificate name. */
export const AGENT_OWNER = '@jiglet';
/** First and longest pause before a restart. */
export const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;
/** A job that ran this long before ending restarts after the shortest pause again. */
const HEALTHY_RUN_MS = 60_000;

/** Emits 'started' (JobView) for each run and 'ended' (JobView) when a run ends. */
export class JobKeeper extends EventEmitter {
  #current: JobView | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pauseMs = RESTART_MIN_MS;
  #closed = false;

  constructor(
    private readonly what: string,
    private readonly spec: JobSpecInput,
    private readonly supervisor: Supervisor,
    private readonly log: Logger,
  ) {
    super();
  }

  /** The run in progress (or the last one). */
  get current(): JobView | undefined {
    return this.#current;
  }

  /** Starts the first run; resolves with it, or throws if it could not be started at all. */
  async start(): Promise<JobView> {
    return this.#run();
  }

  /** No more restarts; the supervisor's shutdown stops the run itself. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #run(): Promise<JobView> {
    // Captures and services open serial ports and devices: the agent's own privileges.
    const job = await this.supervisor.start(this.spec, AGENT_OWNER, {
      privileged: true,
      title: this.what,
    });
    const startedAt = Date.now();
    this.#current = job;
    this.log.info({ job: job.record.id }, `${this.what} started`);
    // A listener that throws must neither fail this run (it is running: a retry would start a
    // second one beside it) nor stop the restarts below.
    this.#tell('started', job);
    this.supervisor
      .ended(job.record.id)
      .then((ended) => {
        this.#tell('ended', ended);
        if (this.#closed) return;
        const { state, exitCode, signal, error } = ended.record;
        if (Date.now() - startedAt > HEALTHY_RUN_MS) this.#pauseMs = RESTART_MIN_MS;
        this.log.warn(
          { job: ended.record.id, state, exitCode, signal, error, restartInMs: this.#pauseMs },
          `${this.what} ended; restarting`,
        );
        this.#later();
      })
      .catch((err: unknown) => {
        this.log.error({ err }, `${this.what}: could not restart it`);
        this.#later();
      });
    return job;
  }

  #tell(event: 'started' | 'ended', job: JobView): void {
    try {
      this.emit(event, job);
    } catch (err) {
      this.log.error({ err, job: job.record.id }, `${this.what}: a '${event}' listener failed`);
    }
  }

  #later(): void {
    if (this.#closed) return;
    const wait = this.#pauseMs;
    this.#pauseMs = Math.min(this.#pauseMs * 2, RESTART_MAX_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      this.#run().catch((err: unknown) => {
        this.log.error({ err }, `${this.what} could not be started`);
        this.#later();
      });
    }, wait);
  }
}
