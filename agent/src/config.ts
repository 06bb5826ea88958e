/**
 * Agent settings: defaults, then the YAML config file, then command-line flags. The config file
 * is also the jig description (its `duts:`), validated by jig-drivers.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { type JigDescription, parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { invalidArgument } from '../../protocol/src/errors.js';
import { expandPlaceholders, freePorts, portNames } from './config-placeholders.js';
import { compilePattern } from './jig/line-matcher.js';
import type { ServiceConfig } from './jig/services.js';
import { DEFAULT_JOB_UID_RANGE, type JobUserPolicy } from './jobs/job-users.js';
import { DEFAULT_RETENTION, type RetentionPolicy } from './jobs/retention-policy.js';

/** Where the agent listens when nothing else says (loopback: exposing it is a decision). */
export const DEFAULT_LISTEN = '127.0.0.1:7411';

/** The settings `jiglet serve` runs with. */
export interface AgentConfig {
  listen: string;
  stateDir: string;
  tlsDir: string;
  logLevel: string;
  /** The jig description from the config file's `duts:` (validated), if it has one. */
  jig?: JigDescription;
  /** Processes the agent runs beside itself (a virtual DUT, ser2net, …). */
  services: ServiceConfig[];
  /** Size limit of the image cache in bytes (default 20 GiB). */
  imageCacheBytes?: number;
  /** Hard maximum of a lease, however often it is renewed (default a week). */
  leaseMaxLifetimeMs?: number;
  /** How long and how much of finished jobs the agent keeps (defaults: DEFAULT_RETENTION). */
  retention: RetentionPolicy;
  /** HOST:PORT of the Prometheus listener (plain HTTP), if any. */
  metrics?: string;
  /** HOST:PORT of the browser console (HTTPS), if any. */
  web?: string;
  /** Which uid users' jobs run as; the agent's default when absent. */
  jobUsers?: JobUserPolicy;
  configFile?: string;
}

/** A uid or gid a job may run as: never root, never beyond the 32-bit range. */
const JobId = z.number().int().min(1, 'expected a uid other than 0 (root)').max(4_294_967_294);

const JobUsersSchema = z.discriminatedUnion('mode', [
  z
    .object({
      mode: z.literal('per-owner'),
      uidRange: z
        .tuple([JobId, JobId])
        .refine(([a, b]) => a <= b, 'expected [first, last] with first <= last')
        .default([DEFAULT_JOB_UID_RANGE.first, DEFAULT_JOB_UID_RANGE.last]),
    })
    .strict(),
  z.object({ mode: z.literal('single'), uid: JobId, gid: JobId }).strict(),
  z.object({ mode: z.literal('agent') }).strict(),
]);

const ServiceSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a name of a-z, 0-9 and "-"'),
    command: z.string().min(1, 'expected a program to run'),
    args: z.array(z.string()).default([]),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
        z.string(),
      )
      .default({}),
    cwd: z.string().min(1).optional(),
    readyPattern: z
      .string()
      .refine(
        (p) => {
          try {
            compilePattern(p, false);
            return true;
          } catch {
            return false;
          }
        },
        { message: 'expected an RE2 regular expression that compiles' },
      )
      .optional(),
    readyTimeoutMs: z.number().int().min(1).max(600_000).default(30_000),
  })
  .strict();

const DAY_MS = 24 * 3600 * 1000;

/** The config file's `retention:` section, in units a person writes; every key optional. */
const RetentionSchema = z
  .object({
    userJobDays: z.number().min(0.01, 'expected at least 0.01 days').max(3650).optional(),
    agentJobDays: z.number().min(0.01, 'expected at least 0.01 days').max(3650).optional(),
    maxBytes: z
      .number()
      .int()
      .min(64 * 1024 * 1024, 'expected at least 64 MiB (67108864)')
      .optional(),
    maxJobs: z.number().int().min(100, 'expected at least 100').max(10_000_000).optional(),
    pruneIntervalMinutes: z.number().min(1).max(1440).optional(),
    pruneEveryJobs: z.number().int().min(1).max(1_000_000).optional(),
    serialLogMaxBytes: z
      .number()
      .int()
      .min(256 * 1024, 'expected at least 256 KiB (262144)')
      .optional(),
    journalMaxBytes: z
      .number()
      .int()
      .min(64 * 1024, 'expected at least 64 KiB (65536)')
      .optional(),
  })
  .strict();

/** The retention policy: the file's values over the defaults. */
function retentionOf(file: z.infer<typeof RetentionSchema> | undefined): RetentionPolicy {
  const d = DEFAULT_RETENTION;
  return {
    userJobMaxAgeMs: file?.userJobDays === undefined ? d.userJobMaxAgeMs : file.userJobDays * DAY_MS,
    agentJobMaxAgeMs: file?.agentJobDays === undefined ? d.agentJobMaxAgeMs : file.agentJobDays * DAY_MS,
    maxBytes: file?.maxBytes ?? d.maxBytes,
    maxJobs: file?.maxJobs ?? d.maxJobs,
    intervalMs: file?.pruneIntervalMinutes === undefined ? d.intervalMs : file.pruneIntervalMinutes * 60_000,
    pruneEveryJobs: file?.pruneEveryJobs ?? d.pruneEveryJobs,
    serialLogMaxBytes: file?.serialLogMaxBytes ?? d.serialLogMaxBytes,
    journalMaxBytes: file?.journalMaxBytes ?? d.journalMaxBytes,
  };
}

const FileSchema = z
  .object({
    listen: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'HOST:PORT')
      .optional(),
    metrics: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'HOST:PORT')
      .optional(),
    web: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'HOST:PORT')
      .optional(),
    stateDir: z.string().min(1).optional(),
    tlsDir: z.string().min(1).optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).optional(),
    duts: z.unknown().optional(),
    imageCacheBytes: z
      .number()
      .int()
      .min(16 * 1024 * 1024, 'expected at least 16 MiB (16777216)')
      .optional(),
    jobUsers: JobUsersSchema.optional(),
    leaseMaxLifetimeMs: z
      .number()
      .int()
      .min(60_000, 'expected at least a minute (60000)')
      .max(365 * 24 * 3600 * 1000, 'expected at most a year')
      .optional(),
    retention: RetentionSchema.optional(),
    services: z
      .array(ServiceSchema)
      .refine(
        (list) => new Set(list.map((x) => x.name)).size === list.length,
        'expected unique service names',
      )
      .optional(),
  })
  .strict();

/** Where the agent keeps its state when neither the flag nor the config file says. */
const DEFAULT_STATE_DIR = '/var/lib/jiglet';

/**
 * Merges defaults, the config file and flags; every problem is reported with its key. The file's
 * placeholders (config-placeholders.ts) are expanded first: `${stateDir}` to the state directory
 * this agent runs with (the flag's if given), `${port:NAME}` to free ports picked now.
 */
export async function loadAgentConfig(
  flags: Partial<
    Omit<
      AgentConfig,
      'jig' | 'services' | 'imageCacheBytes' | 'leaseMaxLifetimeMs' | 'jobUsers' | 'retention'
    >
  > & {
    config?: string;
  },
): Promise<AgentConfig> {
  let file: z.infer<typeof FileSchema> = {};
  const base = flags.config ? resolve(flags.config, '..') : process.cwd();
  const fromFile = (p: string | undefined): string | undefined =>
    p && !isAbsolute(p) ? resolve(base, p) : p;
  let stateDir = resolve(flags.stateDir ?? DEFAULT_STATE_DIR);
  if (flags.config) {
    const name = flags.config;
    let text: string;
    try {
      text = readFileSync(name, 'utf8');
    } catch (err) {
      throw invalidArgument(`cannot read config file ${name}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = parse(text) ?? {};
    } catch (err) {
      throw invalidArgument(`${name}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    // The state directory first (it may name only the folders that do not depend on it), then
    // everything else, which may name it.
    const folders = { configDir: base, tmpDir: tmpdir() };
    if (flags.stateDir === undefined && parsed && typeof parsed === 'object' && 'stateDir' in parsed) {
      const own = expandPlaceholders({ stateDir: parsed.stateDir }, { folders }, name) as {
        stateDir: unknown;
      };
      if (typeof own.stateDir === 'string' && own.stateDir) stateDir = resolve(fromFile(own.stateDir)!);
    }
    const ports = await freePorts(portNames(parsed));
    parsed = expandPlaceholders(
      parsed,
      { folders: { ...folders, stateDir }, port: (portName) => ports.get(portName)! },
      name,
    );
    const result = FileSchema.safeParse(parsed);
    if (!result.success) {
      const problems = result.error.issues.map(
        (i) => `${name}: ${i.path.join('.') || '(top)'}: ${i.message}`,
      );
      throw invalidArgument(problems.join('\n'));
    }
    file = result.data;
  }
  return {
    listen: flags.listen ?? file.listen ?? DEFAULT_LISTEN,
    stateDir,
    tlsDir: resolve(flags.tlsDir ?? fromFile(file.tlsDir) ?? '/etc/jiglet/tls'),
    logLevel: flags.logLevel ?? file.logLevel ?? 'info',
    // A jig description mistake must stop the agent before anything starts, with its key path.
    jig:
      file.duts === undefined
        ? undefined
        : withPasswordFilesFrom(
            base,
            parseJigDescription(stringify({ duts: file.duts }), flags.config ?? 'config'),
          ),
    services: (file.services ?? []).map((service) => ({
      ...service,
      // Relative paths in a config file mean "next to the config file", wherever jiglet was started.
      cwd: fromFile(service.cwd) ?? base,
    })),
    imageCacheBytes: file.imageCacheBytes,
    leaseMaxLifetimeMs: file.leaseMaxLifetimeMs,
    retention: retentionOf(file.retention),
    metrics: flags.metrics ?? file.metrics,
    web: flags.web ?? file.web,
    jobUsers: toJobUserPolicy(file.jobUsers),
    configFile: flags.config,
  };
}

function toJobUserPolicy(v: z.infer<typeof JobUsersSchema> | undefined): JobUserPolicy | undefined {
  if (!v) return undefined;
  if (v.mode === 'per-owner') return { mode: 'per-owner', first: v.uidRange[0], last: v.uidRange[1] };
  return v;
}

/** A DUT's passwordFile and SSH keyFile relative to the config file's folder, like every other path in it. */
function withPasswordFilesFrom(base: string, jig: JigDescription): JigDescription {
  for (const dut of jig.duts) {
    const file = dut.shell.passwordFile;
    if (file && !isAbsolute(file)) dut.shell = { ...dut.shell, passwordFile: resolve(base, file) };
    if (dut.ssh && !isAbsolute(dut.ssh.keyFile))
      dut.ssh = { ...dut.ssh, keyFile: resolve(base, dut.ssh.keyFile) };
  }
  return jig;
}
