/**
 * Shelly relays over HTTP. Gen1: `GET /relay/<n>?turn=on|off` and `GET /relay/<n>` answer
 * `{"ison":true,…}` (https://shelly-api-docs.shelly.cloud/gen1/#shelly1-shelly1pm-relay-0).
 * Gen2+ (Plus, Pro, Gen3): `GET /rpc/Switch.Set?id=<n>&on=true` answers `{"was_on":false}` and
 * `GET /rpc/Switch.GetStatus?id=<n>` answers `{"id":0,"output":true,…}`
 * (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch). Device authentication
 * is not supported: jig switches sit on the jig's own network (Gen2 would need HTTP digest auth).
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import { endpoint, httpGetJson, redactUrl } from './http-get.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory } from './power.js';
import { httpUrl } from './power-tasmota.js';

const schema = z.strictObject({
  driver: z.literal('shelly'),
  url: httpUrl,
  gen: z.union([z.literal(1), z.literal(2)], { error: 'expected 1 (Gen1 REST API) or 2 (Gen2+ RPC API)' }),
  channel: z.number().int().min(0).max(15).default(0),
  ...commonPowerOptions,
});

type ShellyConfig = z.output<typeof schema>;

/** Reads a boolean field of a JSON answer, or fails naming what was expected. */
function booleanField(answer: unknown, key: string, url: URL, what: string): boolean {
  const value =
    answer !== null && typeof answer === 'object' ? (answer as Record<string, unknown>)[key] : undefined;
  if (typeof value === 'boolean') return value;
  throw new JigletError(
    'JIGLET_E_UNAVAILABLE',
    `${what} GET ${redactUrl(url)}: expected {"${key}":true|false,…}, got ${JSON.stringify(answer).slice(0, 200)}`,
  );
}

/** One request to the relay; returns the boolean the answer carries under `key`. */
async function ask(config: ShellyConfig, what: string, path: string, key: string): Promise<boolean> {
  const url = endpoint(config.url, path);
  return booleanField(await httpGetJson(url, { timeoutMs: config.timeoutMs, what }), key, url, what);
}

/** The `shelly` driver: `{ driver: shelly, url, gen: 1|2, channel?, offTimeMs?, timeoutMs? }`. */
export const shellyPowerDriver: PowerDriverFactory<typeof schema> = {
  name: 'shelly',
  configSchema: schema,
  create(config, ctx) {
    const what = `shelly gen${config.gen} power switch of ${ctx.dutName}`;
    const id = config.channel;
    if (config.gen === 1) {
      const set = async (on: boolean): Promise<void> => {
        const ison = await ask(config, what, `relay/${id}?turn=${on ? 'on' : 'off'}`, 'ison');
        // Gen1 answers with the state after the command; a mismatch means the relay did not follow.
        if (ison !== on)
          throw new JigletError(
            'JIGLET_E_UNAVAILABLE',
            `${what}: relay ${id} did not switch ${on ? 'on' : 'off'}`,
          );
      };
      return makePowerSwitch(
        {
          on: () => set(true),
          off: () => set(false),
          status: async () => ((await ask(config, what, `relay/${id}`, 'ison')) ? 'on' : 'off'),
        },
        config,
      );
    }
    // Switch.Set only says what the output *was*; its success is the absence of an RPC error.
    const set = async (on: boolean): Promise<void> => {
      await ask(config, what, `rpc/Switch.Set?id=${id}&on=${on}`, 'was_on');
    };
    return makePowerSwitch(
      {
        on: () => set(true),
        off: () => set(false),
        status: async () =>
          (await ask(config, what, `rpc/Switch.GetStatus?id=${id}`, 'output')) ? 'on' : 'off',
      },
      config,
    );
  },
};
