/**
 * Tasmota smart plugs through their HTTP command API: `GET /cm?cmnd=Power%20On` answers
 * `{"POWER":"ON"}` (or `{"POWER2":"OFF"}` for outlet 2). https://tasmota.github.io/docs/Commands/#with-web-requests
 */
import { z } from 'zod';
import { JigletError } from '../../protocol/src/errors.js';
import { endpoint, httpGetJson, redactUrl } from './http-get.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory, type PowerSwitch } from './power.js';

/** Where a Tasmota(-compatible) endpoint is and how to talk to it. */
export interface TasmotaTarget {
  /** Base URL, e.g. `http://10.0.0.5`. */
  url: string;
  /** Relay number on multi-outlet devices; absent = the device's only relay (`Power`). */
  outlet?: number;
  /** Web user, sent as the `user` query parameter with the password (default `admin`). */
  user?: string;
  /** Web password, sent as the `password` query parameter. */
  password?: string;
  /** Deadline of one request. */
  timeoutMs: number;
}

/** The schema of an HTTP(S) base URL. */
export const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

/** Talks Tasmota's `cm` command API; shared by the `tasmota` and `virtual` drivers. */
export class TasmotaClient {
  readonly #target: TasmotaTarget;
  readonly #what: string;

  /** Creates a client; `what` names it in errors (e.g. `tasmota power switch of rpi4-a`). */
  constructor(target: TasmotaTarget, what: string) {
    this.#target = target;
    this.#what = what;
  }

  /** Switches the relay and checks the state the device echoes back. */
  async setPower(on: boolean): Promise<void> {
    const state = await this.#command(on ? 'On' : 'Off');
    // A locked relay (`PowerLock`, an interlock group) answers with its unchanged state.
    if (state !== (on ? 'on' : 'off')) {
      throw new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `${this.#what}: asked for power ${on ? 'on' : 'off'}, device reports ${state}`,
      );
    }
  }

  /** Reads the relay state (`Power<n>` without an argument). */
  readPower(): Promise<'on' | 'off'> {
    return this.#command();
  }

  async #command(arg?: 'On' | 'Off'): Promise<'on' | 'off'> {
    const { outlet, password, timeoutMs } = this.#target;
    const command = `Power${outlet ?? ''}${arg ? ` ${arg}` : ''}`;
    const url = endpoint(this.#target.url, 'cm');
    // Tasmota's only web user is "admin"; encodeURIComponent gives the `%20` its docs show.
    const auth =
      password !== undefined
        ? `user=${encodeURIComponent(this.#target.user ?? 'admin')}&password=${encodeURIComponent(password)}&`
        : '';
    url.search = `?${auth}cmnd=${encodeURIComponent(command)}`;
    const answer = await httpGetJson(url, { timeoutMs, what: this.#what });
    return this.#stateFrom(answer, url);
  }

  #stateFrom(answer: unknown, url: URL): 'on' | 'off' {
    const outlet = this.#target.outlet;
    // A single-relay device answers `Power1` with `POWER`; a multi-relay one always says `POWER<n>`.
    const keys =
      outlet === undefined ? ['POWER', 'POWER1'] : [`POWER${outlet}`, ...(outlet === 1 ? ['POWER'] : [])];
    if (answer !== null && typeof answer === 'object') {
      for (const key of keys) {
        const value = (answer as Record<string, unknown>)[key];
        if (value === 'ON') return 'on';
        if (value === 'OFF') return 'off';
      }
    }
    // Tasmota reports a bad password or unknown outlet as e.g. {"WARNING":…} or {"Command":"Unknown"}.
    throw new JigletError(
      'JIGLET_E_UNAVAILABLE',
      `${this.#what} GET ${redactUrl(url)}: expected {"${keys[0]}":"ON"|"OFF"}, got ${JSON.stringify(answer).slice(0, 200)}`,
    );
  }
}

/** A `PowerSwitch` over a Tasmota client. */
export function tasmotaSwitch(client: TasmotaClient, options: { offTimeMs: number }): PowerSwitch {
  return makePowerSwitch(
    { on: () => client.setPower(true), off: () => client.setPower(false), status: () => client.readPower() },
    options,
  );
}

const schema = z.strictObject({
  driver: z.literal('tasmota'),
  url: httpUrl,
  outlet: z.number().int().min(1).max(32).optional(),
  user: z.string().min(1).optional(),
  password: z.string().optional(),
  ...commonPowerOptions,
});

/** The `tasmota` driver: `{ driver: tasmota, url, outlet?, user?, password?, offTimeMs?, timeoutMs? }`. */
export const tasmotaPowerDriver: PowerDriverFactory<typeof schema> = {
  name: 'tasmota',
  configSchema: schema,
  create(config, ctx) {
    return tasmotaSwitch(new TasmotaClient(config, `tasmota power switch of ${ctx.dutName}`), config);
  },
};
