/**
 * Storage mux drivers by name. The jig description names a driver under a DUT's `storage.mux`;
 * the registry validates that mapping with the driver's own schema and builds the `StorageMux`.
 */
import { type DriverConfig, DriverRegistry } from './driver-registry.js';
import { qemuStorageMuxDriver } from './qemu/storage-mux-qemu.js';
import type { StorageMux, StorageMuxFactory } from './storage-mux.js';
import { commandStorageMuxDriver } from './storage-mux-command.js';
import { recordMuxSteps, type StorageMuxStepContext } from './storage-mux-common.js';
import { sdwireStorageMuxDriver } from './storage-mux-sdwire.js';
import { usbsdmuxStorageMuxDriver } from './storage-mux-usbsdmux.js';
import { virtualStorageMuxDriver } from './storage-mux-virtual.js';

/** A validated `storage.mux` mapping: the driver name plus its settings, defaults filled in. */
export type StorageMuxConfig = DriverConfig;

/** Storage mux driver factories keyed by their `driver:` name. */
export class StorageMuxRegistry extends DriverRegistry<StorageMuxFactory> {
  constructor() {
    super('storage mux', ['storage', 'mux']);
  }

  /** Builds the mux for one DUT; every action is reported to `ctx.onStep` when given. */
  create(config: unknown, ctx: StorageMuxStepContext): StorageMux {
    const { factory, config: checked } = this.resolve(config, ctx.dutName);
    return recordMuxSteps(factory.create(checked, ctx), factory.name, ctx);
  }
}

/** A registry holding every built-in mux driver (a new one each call: callers may add their own). */
export function builtinStorageMuxRegistry(): StorageMuxRegistry {
  return new StorageMuxRegistry()
    .register(commandStorageMuxDriver)
    .register(sdwireStorageMuxDriver)
    .register(usbsdmuxStorageMuxDriver)
    .register(virtualStorageMuxDriver)
    .register(qemuStorageMuxDriver);
}
