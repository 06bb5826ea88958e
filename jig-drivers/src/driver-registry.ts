/**
 * Drivers by name, for every capability the jig description configures (power, storage muxes):
 * the `driver:` key picks a factory, whose own schema checks the rest of the mapping, and every
 * mistake is reported with its key path.
 */
import type { z } from 'zod';
import { invalidArgument } from '../../protocol/src/errors.js';
import { type CheckResult, checkAgainst, formatKeyPath, type KeyPath } from './config-issues.js';

/** A validated mapping: the driver name plus that driver's settings, defaults filled in. */
export type DriverConfig = { driver: string } & Record<string, unknown>;

/** What a registry needs of a factory. */
export interface NamedDriverFactory {
  readonly name: string;
  readonly configSchema: z.ZodType;
}

/** Factories keyed by their `driver:` name; `kind` names the capability in messages. */
export class DriverRegistry<F extends NamedDriverFactory> {
  readonly #factories = new Map<string, F>();

  constructor(
    private readonly kind: string,
    private readonly defaultPath: KeyPath,
  ) {}

  /** Adds a driver; a second driver with the same name is a programming error. */
  register(factory: F): this {
    if (this.#factories.has(factory.name))
      throw invalidArgument(`${this.kind} driver "${factory.name}" is registered twice`);
    this.#factories.set(factory.name, factory);
    return this;
  }

  /** The registered driver names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  /** Checks a mapping found at `path` with the named driver's schema. */
  check(config: unknown, path: KeyPath = this.defaultPath): CheckResult<DriverConfig> {
    const driver = (config as { driver?: unknown } | null)?.driver;
    if (typeof driver !== 'string') {
      return {
        ok: false,
        problems: [`${formatKeyPath([...path, 'driver'])}: missing, expected a ${this.kind} driver name`],
      };
    }
    const factory = this.#factories.get(driver);
    if (!factory) {
      return {
        ok: false,
        problems: [
          `${formatKeyPath([...path, 'driver'])}: unknown ${this.kind} driver ${JSON.stringify(driver)}; expected one of ${this.names().join(', ')}`,
        ],
      };
    }
    return checkAgainst(factory.configSchema, config, path) as CheckResult<DriverConfig>;
  }

  /** The factory for a config, or INVALID_ARGUMENT naming the DUT and every problem. */
  resolve(config: unknown, dutName: string): { factory: F; config: DriverConfig } {
    const checked = this.check(config);
    if (!checked.ok) throw invalidArgument(checked.problems.map((p) => `DUT ${dutName}: ${p}`).join('\n'));
    return { factory: this.#factories.get(checked.data.driver)!, config: checked.data };
  }
}
