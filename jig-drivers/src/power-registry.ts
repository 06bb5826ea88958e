/**
 * Power drivers by name. The jig description names a driver per DUT; the registry validates that
 * DUT's `power:` mapping with the driver's own schema and builds the `PowerSwitch`.
 */
import { type DriverConfig, DriverRegistry } from './driver-registry.js';
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
export type PowerConfig = DriverConfig;

/** Power driver factories keyed by their `driver:` name. */
export class PowerRegistry extends DriverRegistry<PowerDriverFactory> {
  constructor() {
    super('power', ['power']);
  }

  /** Builds the switch for one DUT; every action is reported to `ctx.onStep` when given. */
  create(config: unknown, ctx: PowerDriverContext): PowerSwitch {
    const { factory, config: checked } = this.resolve(config, ctx.dutName);
    return recordPowerSteps(factory.create(checked, ctx), factory.name, ctx);
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
