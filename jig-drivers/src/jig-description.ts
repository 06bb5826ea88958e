/**
 * The jig description: which DUTs a jig host has, how each is powered, where its console is and
 * how its boot medium is switched to the host for flashing.
 * A YAML file validated as a whole, so that every mistake in it is reported at once with its key
 * path (`lab.yaml: duts[1].power.url: expected an http:// or https:// URL, got "x"`).
 */
import { readFile } from 'node:fs/promises';
import { RE2JS } from 're2js';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { invalidArgument, notFound } from '../../protocol/src/errors.js';
import { checkAgainst, formatKeyPath } from './config-issues.js';
import { builtinPowerRegistry, type PowerConfig, type PowerRegistry } from './power-registry.js';
import { type SshConfig, sshSchema } from './ssh-config.js';
import {
  builtinStorageMuxRegistry,
  type StorageMuxConfig,
  type StorageMuxRegistry,
} from './storage-mux-registry.js';
import { type UsbMatch, usbMatchSchema } from './usb-match.js';

/** What the DUT's power is left at when a lease ends or a job is stopped. */
export interface SafeState {
  /** `off` (default with a power driver), `on`, or `unchanged` (default without one). */
  power: 'off' | 'on' | 'unchanged';
}

/** Where a DUT's serial console is: exactly one of `path` and `usb`. */
export interface SerialConfig {
  /** A fixed device path, e.g. `/dev/ttyUSB0`. */
  path?: string;
  /** A USB adapter to find by VID:PID, serial or port. */
  usb?: UsbMatch;
  /** Line speed. */
  baud: number;
}

/** The block device a DUT's medium appears as on the host: exactly one of `path` and `usb`. */
export interface StorageDeviceConfig {
  /** A stable device path, e.g. `/dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000000123-0:0`. */
  path?: string;
  /** The card reader to find by VID:PID, serial or port (a block device under it). */
  usb?: UsbMatch;
}

/** Default time the medium may take to appear on the host after a switch (USB enumeration + udev). */
export const DEFAULT_APPEAR_TIMEOUT_MS = 30_000;

/** A DUT's boot medium behind a storage mux. */
export interface StorageConfig {
  /** Mux driver config, validated by that driver. */
  mux: StorageMuxConfig;
  /** Where the medium shows up on the host side. */
  device: StorageDeviceConfig;
  /** How long to wait for `device` to appear after switching to the host. */
  appearTimeoutMs: number;
}

/** Longest a health check may run (its lease must fit in the longest lease TTL, a day). */
export const MAX_HEALTH_CHECK_TIMEOUT_MS = 12 * 3600 * 1000;
/** Time a health check may take when its description does not say. */
export const DEFAULT_HEALTH_CHECK_TIMEOUT_MS = 5 * 60 * 1000;

/**
 * A command the agent runs on the jig host to decide whether a DUT is fit for work, after every
 * `everyJobs` leases and/or `everyHours` since the last check (at least one of them).
 */
export interface HealthCheckConfig {
  /** argv: the program and its arguments (no shell unless it is the program). */
  command: string[];
  /** Extra environment for the check (e.g. JIGLET_ADDR and a certificate for jigctl). */
  env: Record<string, string>;
  /** Check after this many leases of the DUT have ended. */
  everyJobs?: number;
  /** Check when this long has passed since the last check. */
  everyHours?: number;
  /** A check still running after this long has failed. */
  timeoutMs: number;
}

/** Default prompts: they fit getty/login, busybox and bash, the virtual DUT and the QEMU DUT. */
export const DEFAULT_SHELL = {
  user: 'root',
  loginPrompt: 'login: $',
  passwordPrompt: '[Pp]assword: $',
  prompt: '[#$] $',
  bootedPattern: 'login: ',
} as const;

/**
 * How exec reaches a shell on the DUT's serial console. Prompts are RE2 patterns matched against
 * the console's unfinished last line. The password is never in the description itself: only the
 * path of a file that holds it (relative paths are next to the config file).
 */
export interface ShellConfig {
  user: string;
  /** File holding the password (one line); absent = log in without one. */
  passwordFile?: string;
  loginPrompt: string;
  passwordPrompt: string;
  prompt: string;
  /** Commands typed once after each login, in the login shell (e.g. `stty -echo`). */
  postLogin: string[];
  /** A serial line that says the DUT has booted (`jigctl dut goto D booted`): a banner or the login prompt. */
  bootedPattern: string;
}

/** One device under test. */
export interface DutDescription {
  /** Unique name, `[a-z0-9][a-z0-9-]{0,62}`. */
  name: string;
  /** Labels used to pick a DUT (`device-type`, `site`, …). */
  labels: Record<string, string>;
  /** Power driver config, validated by that driver. */
  power?: PowerConfig;
  /** Serial console. */
  serial?: SerialConfig;
  /** Boot medium and its mux (absent when the DUT has none). */
  storage?: StorageConfig;
  /** What "safe" means for this DUT. */
  safeState: SafeState;
  /** Its health check (absent when the DUT has none). */
  healthCheck?: HealthCheckConfig;
  /**
   * Device nodes the lease holder's own jobs may open (fastboot, DFU, a USB serial port of its
   * own): granted to the holder's job uid while the lease lasts, taken back when it ends.
   */
  leaseDevices?: string[];
  /** How exec logs in and finds the shell prompt (defaults: DEFAULT_SHELL). */
  shell: ShellConfig;
  /** Its SSH server, once booted (absent: serial only). */
  ssh?: SshConfig;
}

/** A whole jig: where it was read from and its DUTs. */
export interface JigDescription {
  /** File name (or other source name) it was parsed from, for messages. */
  source: string;
  /** The DUTs, in file order. */
  duts: DutDescription[];
}

const serialSchema = z
  .strictObject({
    path: z.string().startsWith('/', { error: 'expected an absolute device path' }).optional(),
    usb: usbMatchSchema.optional(),
    baud: z.number().int().min(50).max(20_000_000).default(115200),
  })
  .refine((serial) => (serial.path === undefined) !== (serial.usb === undefined), {
    error: 'expected exactly one of "path" and "usb"',
  });

const storageSchema = z.strictObject({
  // Only the driver name here; the driver's own schema checks the rest (see the second pass).
  mux: z.looseObject({ driver: z.string() }),
  device: z
    .strictObject({
      path: z.string().startsWith('/', { error: 'expected an absolute device path' }).optional(),
      usb: usbMatchSchema.optional(),
    })
    .refine((device) => (device.path === undefined) !== (device.usb === undefined), {
      error: 'expected exactly one of "path" and "usb"',
    }),
  appearTimeoutMs: z.number().int().min(1).max(600_000).default(DEFAULT_APPEAR_TIMEOUT_MS),
});

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const healthCheckSchema = z
  .strictObject({
    command: z.array(z.string().min(1)).min(1, { error: 'expected a program and its arguments' }),
    env: z
      .record(z.string(), z.string())
      // Checked here rather than as the record's key schema, whose message zod replaces with its own.
      .superRefine((env, ctx) => {
        for (const name of Object.keys(env)) {
          if (!ENV_NAME.test(name))
            ctx.addIssue({
              code: 'custom',
              path: [name],
              message: 'expected an environment variable name',
              input: name,
            });
        }
      })
      .default({}),
    everyJobs: z.number().int().min(1).max(1_000_000).optional(),
    // Fractions are allowed (0.5 = every 30 minutes); a year is the most that makes sense.
    everyHours: z
      .number()
      .positive()
      .max(24 * 366)
      .optional(),
    timeoutMs: z
      .number()
      .int()
      .min(1000)
      .max(MAX_HEALTH_CHECK_TIMEOUT_MS)
      .default(DEFAULT_HEALTH_CHECK_TIMEOUT_MS),
  })
  .refine((check) => check.everyJobs !== undefined || check.everyHours !== undefined, {
    error: 'expected everyJobs, everyHours or both: when the check is due',
  });

/** A prompt pattern: RE2 (linear time), checked when the description is read. */
const promptSchema = (fallback: string) =>
  z
    .string()
    .min(1)
    .max(4096)
    .refine(
      (pattern) => {
        try {
          RE2JS.compile(pattern);
          return true;
        } catch {
          return false;
        }
      },
      { error: 'expected an RE2 regular expression (no backreferences or lookaround)' },
    )
    .default(fallback);

const shellSchema = z.strictObject({
  user: z.string().min(1).max(256).default(DEFAULT_SHELL.user),
  // A path, never the password: descriptions are shared, logged and kept in git.
  passwordFile: z.string().min(1).optional(),
  loginPrompt: promptSchema(DEFAULT_SHELL.loginPrompt),
  passwordPrompt: promptSchema(DEFAULT_SHELL.passwordPrompt),
  prompt: promptSchema(DEFAULT_SHELL.prompt),
  postLogin: z.array(z.string().min(1).max(1024)).default([]),
  bootedPattern: promptSchema(DEFAULT_SHELL.bootedPattern),
});

const dutSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, {
    error: 'expected a DUT name: a-z, 0-9 and "-", not starting with "-", at most 63 characters',
  }),
  labels: z
    .record(
      z.string().regex(/^[a-z0-9][a-z0-9._/-]{0,62}$/, {
        error: 'expected a label name: a-z, 0-9, ".", "_", "/", "-"',
      }),
      z.string(),
    )
    .default({}),
  // Only the driver name here; the driver's own schema checks the rest (see the second pass).
  power: z.looseObject({ driver: z.string() }).optional(),
  serial: serialSchema.optional(),
  storage: storageSchema.optional(),
  safeState: z.strictObject({ power: z.enum(['off', 'on', 'unchanged']).optional() }).optional(),
  healthCheck: healthCheckSchema.optional(),
  leaseDevices: z.array(z.string().startsWith('/', { error: 'expected an absolute device path' })).optional(),
  shell: shellSchema.optional(),
  ssh: sshSchema.optional(),
});

const jigSchema = z.strictObject({ duts: z.array(dutSchema) });

/** Parses and validates a jig description; throws JIGLET_E_INVALID_ARGUMENT listing every problem. */
export function parseJigDescription(
  text: string,
  sourceName: string,
  registry: PowerRegistry = builtinPowerRegistry(),
  muxRegistry: StorageMuxRegistry = builtinStorageMuxRegistry(),
): JigDescription {
  const fail = (problems: string[]): never => {
    throw invalidArgument(problems.map((p) => `${sourceName}: ${p}`).join('\n'));
  };
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    fail(document.errors.map((e) => `line ${lines.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`));
  }
  const raw: unknown = document.toJS();
  const shape = checkAgainst(jigSchema, raw ?? {});
  const problems = shape.ok ? [] : [...shape.problems];

  // Second pass on the raw input, so driver settings are checked even where the first pass failed.
  const rawDuts = (raw as { duts?: unknown } | null)?.duts;
  const powers: (PowerConfig | undefined)[] = [];
  const muxes: (StorageMuxConfig | undefined)[] = [];
  if (Array.isArray(rawDuts)) {
    rawDuts.forEach((dut: unknown, index) => {
      const power = (dut as { power?: unknown } | null)?.power;
      if (hasDriverName(power)) {
        const checked = registry.check(power, ['duts', index, 'power']);
        if (checked.ok) powers[index] = checked.data;
        else problems.push(...checked.problems);
      }
      const mux = (dut as { storage?: { mux?: unknown } | null } | null)?.storage?.mux;
      if (hasDriverName(mux)) {
        const checked = muxRegistry.check(mux, ['duts', index, 'storage', 'mux']);
        if (checked.ok) muxes[index] = checked.data;
        else problems.push(...checked.problems);
      }
    });
  }
  if (!shape.ok) return fail(problems);

  const seen = new Map<string, number>();
  const duts = shape.data.duts.map((dut, index): DutDescription => {
    const first = seen.get(dut.name);
    if (first !== undefined) {
      problems.push(
        `${formatKeyPath(['duts', index, 'name'])}: duplicate DUT name "${dut.name}" (also duts[${first}])`,
      );
    } else seen.set(dut.name, index);
    const power = powers[index];
    const safePower = dut.safeState?.power ?? (power ? 'off' : 'unchanged');
    if (safePower !== 'unchanged' && !power) {
      problems.push(
        `${formatKeyPath(['duts', index, 'safeState', 'power'])}: "${safePower}" needs a power driver`,
      );
    }
    const mux = muxes[index];
    // Only present when configured: a DUT without a medium has no `storage` key at all.
    const storage = dut.storage && mux ? { storage: { ...dut.storage, mux } } : {};
    return {
      name: dut.name,
      labels: dut.labels,
      power,
      serial: dut.serial,
      ...storage,
      safeState: { power: safePower },
      ...(dut.healthCheck ? { healthCheck: dut.healthCheck } : {}),
      ...(dut.leaseDevices?.length ? { leaseDevices: dut.leaseDevices } : {}),
      shell: dut.shell ?? { ...DEFAULT_SHELL, postLogin: [] },
      ...(dut.ssh ? { ssh: dut.ssh } : {}),
    };
  });
  if (problems.length > 0) fail(problems);
  return { source: sourceName, duts };
}

/** A mapping whose `driver` is a string; anything else the first pass reports. */
function hasDriverName(value: unknown): value is { driver: string } {
  return (
    value !== null && typeof value === 'object' && typeof (value as { driver?: unknown }).driver === 'string'
  );
}

/** Reads and parses a jig description file. */
export async function loadJigDescription(
  file: string,
  registry?: PowerRegistry,
  muxRegistry?: StorageMuxRegistry,
): Promise<JigDescription> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message = `${file}: cannot read the jig description: ${code ?? String(error)}`;
    throw code === 'ENOENT' ? notFound(message) : invalidArgument(message);
  }
  return parseJigDescription(text, file, registry, muxRegistry);
}

/** The named DUT, or JIGLET_E_NOT_FOUND listing the names there are. */
export function findDut(jig: JigDescription, name: string): DutDescription {
  const dut = jig.duts.find((candidate) => candidate.name === name);
  if (!dut)
    throw notFound(
      `no DUT "${name}" in ${jig.source} (there are: ${jig.duts.map((d) => d.name).join(', ') || 'none'})`,
    );
  return dut;
}
