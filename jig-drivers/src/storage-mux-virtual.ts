/**
 * The virtual DUT's storage mux (fixtures/virtual-dut): on the same HTTP endpoint as its power
 * input, `GET /mux?to=host|dut` switches and `GET /mux` reads back, both answering `{"side":"host"}`.
 * Switching answers once the virtual medium has appeared on (or vanished from) the host.
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import { endpoint, httpGetJson, redactUrl } from './http-get.js';
import { httpUrl } from './power-tasmota.js';
import type { MuxSide, StorageMuxFactory } from './storage-mux.js';
import { commonMuxOptions } from './storage-mux-common.js';

/** A virtual mux switches in milliseconds; a long wait means the fixture is wedged. */
const VIRTUAL_MUX_TIMEOUT_MS = 5000;

const schema = z.strictObject({
  driver: z.literal('virtual'),
  url: httpUrl,
  ...commonMuxOptions,
  timeoutMs: commonMuxOptions.timeoutMs.unwrap().default(VIRTUAL_MUX_TIMEOUT_MS),
});

/** Sends one `/mux` request and returns the side the device reports. */
async function request(
  base: string,
  to: 'host' | 'dut' | undefined,
  options: { timeoutMs: number; what: string },
): Promise<'host' | 'dut'> {
  const url = endpoint(base, 'mux');
  if (to !== undefined) url.search = `?to=${to}`;
  const answer = await httpGetJson(url, options);
  const side = (answer as { side?: unknown } | null)?.side;
  if (side === 'host' || side === 'dut') return side;
  throw new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `${options.what} GET ${redactUrl(url)}: expected {"side":"host"|"dut"}, got ${JSON.stringify(answer).slice(0, 200)}`,
  );
}

/** The `virtual` driver: `{ driver: virtual, url, timeoutMs? }`. */
export const virtualStorageMuxDriver: StorageMuxFactory<typeof schema> = {
  name: 'virtual',
  configSchema: schema,
  create(config, ctx) {
    const options = { timeoutMs: config.timeoutMs, what: `virtual storage mux of ${ctx.dutName}` };
    const switchTo = async (to: 'host' | 'dut'): Promise<void> => {
      const side = await request(config.url, to, options);
      if (side !== to) {
        throw new JigletError(
          'JIGLET_E_UNAVAILABLE',
          `${options.what}: asked for ${to}, device reports ${side}`,
        );
      }
    };
    return {
      toHost: () => switchTo('host'),
      toDut: () => switchTo('dut'),
      status: (): Promise<MuxSide> => request(config.url, undefined, options),
    };
  },
};
