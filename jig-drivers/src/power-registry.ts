/**
 * Power drivers by name. The jig description names a driver per DUT; the registry validates that
 * DUT's `power:` mapping with the driver's own schema and builds the `PowerSwitch`.
 */
import { invalidArgument } from '../../protocol/src/errors.js';
import { type CheckResult, checkAgainst, formatKeyPath, type KeyPath } from './config-issues.js';
import type { PowerDriverContext, PowerDriverFactory, PowerSwitch } from './power.js';
import { recordPowerSteps } from './power.js';
import { commandPowerDriver } from './power-command.js';
import { gpioPowerDriver } from './power-gpio.js';
import { shellyPowerDriver } from './power-shelly.js';
import { tasmotaPowerDriver } from './power-tasmota.js';
import { usbHidRelayPowerDriver } from './power-usb-hid-relay.js';
import { virtualPowerDriver } from './power-virtual.js';
import { qemuPowerDriver } from './qemu/power-qemu.js';

/** A validated `power:` mapping: the driver name plus that driver's settings, defaults filled in. */
export type PowerConfig = { driver: string } & Record<string, unknown>;

/** Power driver factories keyed by their `driver:` name. */
export class PowerRegistry {
  readonly #factories = new Map<string, PowerDriverFactory>();

  /** Adds a driver; a second driver with the same name is a programming error. */
  register(factory: PowerDriverFactory): this {
    if (this.#factories.has(factory.name))
      throw invalidArgument(`power driver "${factory.name}" is registered twice`);
    this.#factories.set(factory.name, factory);
    return this;
  }

  /** The registered driver names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  /** Checks a `power:` mapping found at `path`, with the named driver's schema. */
  check(config: unknown, path: KeyPath = ['power']): CheckResult<PowerConfig> {
    const driver = (config as { driver?: unknown } | null)?.driver;
    if (typeof driver !== 'string') {
      return {
        ok: false,
        problems: [`${formatKeyPath([...path, 'driver'])}: missing, expected a power driver name`],
      };
    }
    const factory = this.#factories.get(driver);
    if (!factory) {
      const known = this.names().join(', ');
      return {
        ok: false,
        problems: [
          `${formatKeyPath([...path, 'driver'])}: unknown power driver ${JSON.stringify(driver)}; expected one of ${known}`,
        ],
      };
    }
    return checkAgainst(factory.configSchema, config, path) as CheckResult<PowerConfig>;
  }

  /** Builds the switch for one DUT; every action is reported to `ctx.onStep` when given. */
  create(config: unknown, ctx: PowerDriverContext): PowerSwitch {
    const checked = this.check(config);
    if (!checked.ok)
      throw invalidArgument(checked.problems.map((p) => `DUT ${ctx.dutName}: ${p}`).join('\n'));
    const factory = this.#factories.get(checked.data.driver)!;
    return recordPowerSteps(factory.create(checked.data, ctx), factory.name, ctx);
  }
}

/** A registry holding every built-in power driver (a new one each call: callers may add their own). */
export function builtinPowerRegistry(): PowerRegistry {
  return new PowerRegistry()
    .register(commandPowerDriver)
    .register(gpioPowerDriver)
    .register(shellyPowerDriver)
    .register(tasmotaPowerDriver)
    .register(usbHidRelayPowerDriver)
    .register(virtualPowerDriver)
    .register(qemuPowerDriver);
}
