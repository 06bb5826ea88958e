/**
 * One health check as a supervised job on the jig host: logged like any job, so `jigctl logs JOB`
 * shows why a DUT was quarantined, and bounded by the check's timeout so a hung check cannot hold
 * the DUT's lease for ever.
 */
import type { HealthCheckConfig } from '../../../jig-drivers/src/jig-description.js';
import { howJobEnded } from '../jobs/job-end-words.js';
import type { JobSpecInput } from '../jobs/job-spec.js';
import type { Supervisor } from '../jobs/supervisor.js';

/** How a check ended. */
export interface HealthCheckResult {
  jobId: string;
  passed: boolean;
  /** For people: "exited with code 3", "timed out after 300 s", "could not start: …". */
  how: string;
}

/**
 * Runs the check and waits for it. Its owner is the lease holder (`@jiglet-health`), so if that
 * lease ends early (an admin revokes it) the lease machinery stops the check like any holder's job.
 */
export async function runHealthCheckJob(opts: {
  supervisor: Supervisor;
  dut: string;
  config: HealthCheckConfig;
  leaseId: string;
  owner: string;
}): Promise<HealthCheckResult> {
  const [command, ...args] = opts.config.command;
  const spec: JobSpecInput = {
    command: command!,
    args,
    // JIGLET_DUT comes from `dut`; JIGLET_LEASE lets a jigctl inside the check act on the DUT it holds.
    env: { ...opts.config.env, JIGLET_HEALTH_CHECK: '1', JIGLET_LEASE: opts.leaseId },
    cwd: '',
    dut: opts.dut,
    limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
    timeoutMs: opts.config.timeoutMs,
    stdin: false,
  };
  // An admin-configured check that may power-cycle and read the DUT: it runs as the agent.
  // On the local endpoint it acts as the lease holder with an operator's rights, on this DUT only.
  const started = await opts.supervisor.start(spec, opts.owner, {
    privileged: true,
    title: 'health check',
    local: { role: 'operator', lease: opts.leaseId },
  });
  const { record } = await opts.supervisor.ended(started.record.id);
  const passed = record.state === 'exited' && record.exitCode === 0;
  const how = howJobEnded(record, `timed out after ${Math.round(opts.config.timeoutMs / 1000)} s`);
  return { jobId: record.id, passed, how };
}
