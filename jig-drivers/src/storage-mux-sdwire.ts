/**
 * SDWire (Tizen's SD card mux on an FTDI FT200X) through its `sd-mux-ctrl` tool:
 * `sd-mux-ctrl --device-serial=SERIAL --ts` connects the card to the "test server" (our host),
 * `--dut` to the board, `--status` prints `SD connected to: TS|DUT`. https://wiki.tizen.org/SDWire
 * The serial is the one written with `--set-serial`; it is how one SDWire is told from the next.
 */
import { z } from 'zod';
import { runCommand } from './run-command.js';
import type { MuxSide, StorageMuxFactory } from './storage-mux.js';
import { commonMuxOptions, unreadableAnswer } from './storage-mux-common.js';

/** The tool's name, looked up on PATH. */
const TOOL = 'sd-mux-ctrl';

const schema = z.strictObject({
  driver: z.literal('sdwire'),
  serial: z.string().min(1),
  ...commonMuxOptions,
});

/** argv of one sd-mux-ctrl call: `ts` = to the host, `dut` = to the board, `status` = read back. */
export function sdMuxCtrlArgv(serial: string, command: 'ts' | 'dut' | 'status'): string[] {
  return [TOOL, `--device-serial=${serial}`, `--${command}`];
}

// Upstream prints TS/DUT; widely used forks print Host/RPI for the same two pin states.
const STATUS_LINE = /^SD connected to:\s*(\S+)/im;

/** Reads `--status` output; `Device not initialized!` (a fresh SD-MUX) is unknown, garbage undefined. */
export function sideFromSdMuxStatus(stdout: string): MuxSide | undefined {
  const word = STATUS_LINE.exec(stdout)?.[1]?.toLowerCase();
  if (word === 'ts' || word === 'host') return 'host';
  if (word === 'dut' || word === 'rpi') return 'dut';
  if (/Device not initialized/i.test(stdout)) return 'unknown';
  return undefined;
}

/** The `sdwire` driver: `{ driver: sdwire, serial, timeoutMs? }`. */
export const sdwireStorageMuxDriver: StorageMuxFactory<typeof schema> = {
  name: 'sdwire',
  configSchema: schema,
  create(config, ctx) {
    const options = { timeoutMs: config.timeoutMs, what: `sdwire storage mux of ${ctx.dutName}` };
    return {
      toHost: async () => {
        await runCommand(sdMuxCtrlArgv(config.serial, 'ts'), options);
      },
      toDut: async () => {
        await runCommand(sdMuxCtrlArgv(config.serial, 'dut'), options);
      },
      status: async () => {
        const argv = sdMuxCtrlArgv(config.serial, 'status');
        const { stdout } = await runCommand(argv, options);
        const side = sideFromSdMuxStatus(stdout);
        if (side !== undefined) return side;
        throw unreadableAnswer(`${options.what}: ${argv.join(' ')}`, '"SD connected to: TS|DUT"', stdout);
      },
    };
  },
};
