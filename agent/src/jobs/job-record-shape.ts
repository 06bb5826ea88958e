/**
 * The shape a job record read back from disk must have before the supervisor trusts it: a record
 * that parses but lacks its state or spec would otherwise fail in recovery (and stop the agent) or
 * later in a ListJobs. It checks what loading and the wire mapping rely on; words a newer version
 * may add to (stop reasons, containment modes) are only checked to be strings, and fields this
 * version does not know are kept, not refused.
 */
import { z } from 'zod';

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

// Containment checks the paths themselves when it adopts them (containment.ts).
const CgroupSchema = z.looseObject({ mode: z.string(), dirs: z.array(z.string()) });

const TestCaseSchema = z.looseObject({
  suite: z.string(),
  name: z.string(),
  status: z.enum(['passed', 'failed', 'error', 'skipped']),
  durationMs: z.number(),
  message: z.string(),
});

/** A job record as saved by JobRecords.save. */
export const JobRecordSchema = z.looseObject({
  id: z.string(),
  owner: z.string(),
  spec: SpecSchema,
  state: z.enum(['pending', 'running', 'exited', 'failed', 'stopped', 'lost']),
  stopReason: z.string().optional(),
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
  title: z.string().optional(),
  testCases: z.array(TestCaseSchema).optional(),
  resultsError: z.string().optional(),
  stderrTail: z.string().optional(),
});
