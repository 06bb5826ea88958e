/**
 * Power through a GPIO line driving a relay, via libgpiod v1's command-line tools as shipped by
 * Debian bookworm (gpiod 1.6): `gpioset gpiochip0 17=1`. Why the tools and not a binding: no
 * maintained Node libgpiod binding exists, sysfs GPIO is deprecated, and the tools run fine in the
 * job that a power action already is. libgpiod v2 changed the syntax (`gpioset -c gpiochip0 17=1`),
 * so all command construction lives in the two pure functions below.
 *
 * Two v1 quirks shape this driver:
 * - gpioset (default `--mode=exit`) releases the line when it exits; the value stays on common
 *   jig hosts (Raspberry Pi, most SoCs) but is undefined by the ABI.
 * - gpioget always requests the line as an *input*: reading the relay's own output line would
 *   float it and may drop the relay. So state is read from an optional separate sense line
 *   (e.g. a feedback contact); without one, status is `unknown`.
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory, type PowerState } from './power.js';
import { type CommandRunner, runCommand } from './run-command.js';

const lineNumber = z.number().int().min(0).max(4095);

const schema = z
  .strictObject({
    driver: z.literal('gpio'),
    chip: z.union([z.string().regex(/^[\w.-]+$/), z.number().int().min(0)]).default('gpiochip0'),
    line: lineNumber,
    // Many relay boards switch on when the input is pulled low.
    activeLow: z.boolean().default(false),
    sense: z.strictObject({ line: lineNumber, activeLow: z.boolean().default(false) }).optional(),
    ...commonPowerOptions,
  })
  .refine((config) => config.sense?.line !== config.line, {
    error: 'the sense line must differ from the output line (gpioget v1 would turn the output into an input)',
    path: ['sense', 'line'],
  });

/** The validated `gpio` driver config. */
export type GpioPowerConfig = z.output<typeof schema>;

/** argv that drives the output line to logical `on` (the tool applies active-low with `-l`). */
export function gpiosetArgv(config: GpioPowerConfig, on: boolean): string[] {
  return [
    'gpioset',
    ...(config.activeLow ? ['-l'] : []),
    String(config.chip),
    `${config.line}=${on ? 1 : 0}`,
  ];
}

/** argv that reads the sense line's logical value, or undefined without a sense line. */
export function gpiogetArgv(config: GpioPowerConfig): string[] | undefined {
  if (config.sense === undefined) return undefined;
  return [
    'gpioget',
    ...(config.sense.activeLow ? ['-l'] : []),
    String(config.chip),
    String(config.sense.line),
  ];
}

/** Builds the `gpio` driver around a runner (tests pass a fake: no GPIO chip exists there). */
export function createGpioPowerDriver(runner: CommandRunner = runCommand): PowerDriverFactory<typeof schema> {
  return {
    name: 'gpio',
    configSchema: schema,
    create(config, ctx) {
      const options = { timeoutMs: config.timeoutMs, what: `gpio power switch of ${ctx.dutName}` };
      const status = async (): Promise<PowerState> => {
        const argv = gpiogetArgv(config);
        if (argv === undefined) return 'unknown';
        const value = (await runner(argv, options)).stdout.trim();
        if (value === '1') return 'on';
        if (value === '0') return 'off';
        throw new JigletError(
          'JIGLET_E_UNAVAILABLE',
          `${options.what}: ${argv.join(' ')}: expected 0 or 1, got ${JSON.stringify(value)}`,
        );
      };
      return makePowerSwitch(
        {
          on: async () => {
            await runner(gpiosetArgv(config, true), options);
          },
          off: async () => {
            await runner(gpiosetArgv(config, false), options);
          },
          status,
        },
        config,
      );
    },
  };
}

/** The `gpio` driver: `{ driver: gpio, chip?, line, activeLow?, sense?: { line, activeLow? }, … }`. */
export const gpioPowerDriver = createGpioPowerDriver();
