/**
 * Storage mux drivers by name. The jig description names a driver under a DUT's `storage.mux`;
 * the registry validates that mapping with the driver's own schema and builds the `StorageMux`.
 */
import { invalidArgument } from '../../protocol/src/errors.js';
import { type CheckResult, checkAgainst, formatKeyPath, type KeyPath } from './config-issues.js';
import { qemuStorageMuxDriver } from './qemu/storage-mux-qemu.js';
import type { StorageMux, StorageMuxFactory } from './storage-mux.js';
import { commandStorageMuxDriver } from './storage-mux-command.js';
import { recordMuxSteps, type StorageMuxStepContext } from './storage-mux-common.js';
import { sdwireStorageMuxDriver } from './storage-mux-sdwire.js';
import { usbsdmuxStorageMuxDriver } from './storage-mux-usbsdmux.js';
import { virtualStorageMuxDriver } from './storage-mux-virtual.js';

/** A validated `storage.mux` mapping: the driver name plus its settings, defaults filled in. */
export type StorageMuxConfig = { driver: string } & Record<string, unknown>;

/** Storage mux driver factories keyed by their `driver:` name. */
export class StorageMuxRegistry {
  readonly #factories = new Map<string, StorageMuxFactory>();

  /** Adds a driver; a second driver with the same name is a programming error. */
  register(factory: StorageMuxFactory): this {
    if (this.#factories.has(factory.name))
      throw invalidArgument(`storage mux driver "${factory.name}" is registered twice`);
    this.#factories.set(factory.name, factory);
    return this;
  }

  /** The registered driver names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  /** Checks a `storage.mux` mapping found at `path`, with the named driver's schema. */
  check(config: unknown, path: KeyPath = ['storage', 'mux']): CheckResult<StorageMuxConfig> {
    const driver = (config as { driver?: unknown } | null)?.driver;
    if (typeof driver !== 'string') {
      return {
        ok: false,
        problems: [`${formatKeyPath([...path, 'driver'])}: missing, expected a storage mux driver name`],
      };
    }
    const factory = this.#factories.get(driver);
    if (!factory) {
      const known = this.names().join(', ');
      return {
        ok: false,
        problems: [
          `${formatKeyPath([...path, 'driver'])}: unknown storage mux driver ${JSON.stringify(driver)}; expected one of ${known}`,
        ],
      };
    }
    return checkAgainst(factory.configSchema, config, path) as CheckResult<StorageMuxConfig>;
  }

  /** Builds the mux for one DUT; every action is reported to `ctx.onStep` when given. */
  create(config: unknown, ctx: StorageMuxStepContext): StorageMux {
    const checked = this.check(config);
    if (!checked.ok)
      throw invalidArgument(checked.problems.map((p) => `DUT ${ctx.dutName}: ${p}`).join('\n'));
    const factory = this.#factories.get(checked.data.driver)!;
    return recordMuxSteps(factory.create(checked.data, ctx), factory.name, ctx);
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
