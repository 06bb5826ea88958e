/**
 * The shape a job record read back from disk must have before the supervisor trusts it: a record
 * that parses but lacks its state or spec would otherwise fail in recovery (and stop the agent) or
 * later in a ListJobs. Loose objects: a field this version does not know is kept, not refused.
 */
import { z } from 'zod';
import type { JobRecord } from './job-records.js';

const LimitsSchema = z.looseObject({
  memoryBytes: z.number(),
  cpuMillis: z.number(),
  pidsMax: z.number(),
});

const SpecSchema = z.looseObject({
  command: z.string(),
  args: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  cwd: z.string(),
  dut: z.string(),
  limits: LimitsSchema,
  timeoutMs: z.number(),
  stdin: z.boolean(),
});

const CgroupSchema = z.looseObject({
  mode: z.enum(['cgroup-v2', 'cgroup-v1', 'none']),
  dirs: z.array(z.string()),
  tracker: z.object({ kind: z.enum(['unified', 'freezer']), dir: z.string() }).optional(),
});

/** A job record as saved by JobRecords.save. */
export const JobRecordSchema: z.ZodType<JobRecord> = z.looseObject({
  id: z.string(),
  owner: z.string(),
  spec: SpecSchema,
  state: z.enum(['pending', 'running', 'exited', 'failed', 'stopped', 'lost']),
  stopReason: z.enum(['request', 'timeout', 'shutdown', 'lease', 'error']).optional(),
  exitCode: z.number().optional(),
  signal: z.string().optional(),
  oomKilled: z.boolean(),
  error: z.string().optional(),
  pid: z.number().optional(),
  containment: z.string(),
  cgroup: CgroupSchema.optional(),
  createdAt: z.number(),
  startedAt: z.number().optional(),
  endedAt: z.number().optional(),
  outputBytes: z.number().optional(),
});
