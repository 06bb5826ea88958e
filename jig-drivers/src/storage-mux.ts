/**
 * The storage capability: an SD-card / USB mux that connects a DUT's boot medium either to the
 * DUT or to the jig host, where it shows up as a block device to flash. The rest of jiglet
 * depends on `StorageMux` only; each driver is a `StorageMuxFactory` looked up by name.
 */
import type { z } from 'zod';

/** Where the medium is connected now; `unknown` when the mux cannot be read back. */
export type MuxSide = 'host' | 'dut' | 'unknown';

/** Switches one DUT's boot medium between the DUT and the host. */
export interface StorageMux {
  /** Connects the medium to the host (it then appears as a block device there). */
  toHost(): Promise<void>;
  /** Connects the medium back to the DUT. */
  toDut(): Promise<void>;
  /** Reads the side back from the hardware. */
  status(): Promise<MuxSide>;
}

/** What a mux driver gets besides its config. */
export interface StorageMuxContext {
  /** The DUT whose medium this mux switches (for messages). */
  dutName: string;
}

/** A mux driver: its name, the config it accepts, and how to build a mux from that config. */
export interface StorageMuxFactory<S extends z.ZodType = z.ZodType> {
  /** The `driver:` value that selects it under `storage.mux` in a jig description. */
  readonly name: string;
  /** Validates (and fills defaults of) the whole `storage.mux` mapping, `driver` key included. */
  readonly configSchema: S;
  /** Builds a mux from a config that passed `configSchema`. */
  create(config: z.output<S>, ctx: StorageMuxContext): StorageMux;
}
