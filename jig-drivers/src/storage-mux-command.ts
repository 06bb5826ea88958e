/**
 * A storage mux through configured shell commands, for muxes with a command-line tool of their own
 * (a GPIO-driven mux, `ssh muxhost …`). Each command runs under the driver's deadline in its own
 * process group; a non-zero exit is an error quoting the command's stderr.
 */
import { z } from 'zod';
import { runShellCommand } from './run-command.js';
import type { MuxSide, StorageMuxFactory } from './storage-mux.js';
import { commonMuxOptions } from './storage-mux-common.js';

/** A configured regular expression: refused at load time if it does not compile. */
const pattern = z.string().refine(
  (text) => {
    try {
      new RegExp(text);
      return true;
    } catch {
      // The SyntaxError is the answer to the question asked: "is this a regular expression?"
      return false;
    }
  },
  { error: 'expected a regular expression' },
);

const schema = z
  .strictObject({
    driver: z.literal('command'),
    host: z.string().min(1),
    dut: z.string().min(1),
    status: z.string().min(1).optional(),
    statusHostPattern: pattern.optional(),
    statusDutPattern: pattern.optional(),
    ...commonMuxOptions,
  })
  .refine(
    (config) =>
      config.status !== undefined ||
      (config.statusHostPattern === undefined && config.statusDutPattern === undefined),
    { error: 'a status pattern needs a status command', path: ['status'] },
  );

type CommandMuxConfig = z.output<typeof schema>;

/**
 * Maps a status command's stdout to a side: host pattern first, then DUT pattern. With only one
 * pattern configured, no match means the other side; with neither, the output says nothing we can read.
 */
export function sideFromOutput(
  stdout: string,
  config: Pick<CommandMuxConfig, 'statusHostPattern' | 'statusDutPattern'>,
): MuxSide {
  const { statusHostPattern: hostPattern, statusDutPattern: dutPattern } = config;
  if (hostPattern !== undefined && new RegExp(hostPattern, 'm').test(stdout)) return 'host';
  if (dutPattern !== undefined && new RegExp(dutPattern, 'm').test(stdout)) return 'dut';
  if (hostPattern !== undefined && dutPattern === undefined) return 'dut';
  if (dutPattern !== undefined && hostPattern === undefined) return 'host';
  return 'unknown';
}

/** The `command` driver: `{ driver: command, host, dut, status?, statusHostPattern?, statusDutPattern?, timeoutMs? }`. */
export const commandStorageMuxDriver: StorageMuxFactory<typeof schema> = {
  name: 'command',
  configSchema: schema,
  create(config, ctx) {
    const options = { timeoutMs: config.timeoutMs, what: `command storage mux of ${ctx.dutName}` };
    return {
      toHost: async () => {
        await runShellCommand(config.host, options);
      },
      toDut: async () => {
        await runShellCommand(config.dut, options);
      },
      status: async () => {
        if (config.status === undefined) return 'unknown';
        return sideFromOutput((await runShellCommand(config.status, options)).stdout, config);
      },
    };
  },
};
