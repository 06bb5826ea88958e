/**
 * The virtual DUT's power input. The virtual DUT (fixtures/) serves Tasmota's `cm` API, so this is
 * the Tasmota client under its own name and with only the settings a virtual DUT has.
 */
import { z } from 'zod';
import { commonPowerOptions, type PowerDriverFactory } from './power.js';
import { httpUrl, TasmotaClient, tasmotaSwitch } from './power-tasmota.js';

const schema = z.strictObject({
  driver: z.literal('virtual'),
  url: httpUrl,
  ...commonPowerOptions,
  // A virtual DUT has no rails to drain: no reason to make every test wait two seconds per cycle.
  offTimeMs: commonPowerOptions.offTimeMs.unwrap().default(0),
});

/** The `virtual` driver: `{ driver: virtual, url, offTimeMs?, timeoutMs? }`. */
export const virtualPowerDriver: PowerDriverFactory<typeof schema> = {
  name: 'virtual',
  configSchema: schema,
  create(config, ctx) {
    return tasmotaSwitch(new TasmotaClient(config, `virtual power input of ${ctx.dutName}`), config);
  },
};
