/**
 * Power through configured shell commands, for anything with a command-line tool
 * (`uhubctl -a on -p 2`, a PDU's CLI, `ssh pdu …`). Each command runs under the driver's
 * deadline in its own process group; a non-zero exit is an error quoting the command's stderr.
 */
import { z } from 'zod';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory, type PowerState } from './power.js';
import { runShellCommand } from './run-command.js';

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

const schema = z.strictObject({
  driver: z.literal('command'),
  on: z.string().min(1),
  off: z.string().min(1),
  status: z.string().min(1).optional(),
  statusOnPattern: pattern.optional(),
  statusOffPattern: pattern.optional(),
  ...commonPowerOptions,
});

type CommandConfig = z.output<typeof schema>;

/** Maps a status command's stdout to a state: on-pattern first, then off-pattern, else off/unknown. */
export function stateFromOutput(
  stdout: string,
  config: Pick<CommandConfig, 'statusOnPattern' | 'statusOffPattern'>,
): PowerState {
  // Without an on-pattern, a successful status command has told us nothing we can read.
  if (config.statusOnPattern === undefined) return 'unknown';
  if (new RegExp(config.statusOnPattern, 'm').test(stdout)) return 'on';
  if (config.statusOffPattern === undefined) return 'off';
  return new RegExp(config.statusOffPattern, 'm').test(stdout) ? 'off' : 'unknown';
}

/** The `command` driver: `{ driver: command, on, off, status?, statusOnPattern?, statusOffPattern?, … }`. */
export const commandPowerDriver: PowerDriverFactory<typeof schema> = {
  name: 'command',
  configSchema: schema,
  create(config, ctx) {
    const options = { timeoutMs: config.timeoutMs, what: `command power switch of ${ctx.dutName}` };
    return makePowerSwitch(
      {
        on: async () => {
          await runShellCommand(config.on, options);
        },
        off: async () => {
          await runShellCommand(config.off, options);
        },
        status: async () => {
          if (config.status === undefined) return 'unknown';
          return stateFromOutput((await runShellCommand(config.status, options)).stdout, config);
        },
      },
      config,
    );
  },
};
