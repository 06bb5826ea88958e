/**
 * Linux Automation's USB-SD-Mux through its `usbsdmux` tool: `usbsdmux /dev/sg2 host|dut` switches,
 * `usbsdmux /dev/sg2 get` prints `host`, `dut` or `off`. https://github.com/linux-automation/usbsdmux
 * The mux is addressed by its SCSI generic node; the package's udev rule gives it a stable name
 * (`/dev/usb-sd-mux/id-000000000123`), which is what a jig description should use.
 */
import { z } from 'zod';
import { runCommand } from './run-command.js';
import type { MuxSide, StorageMuxFactory } from './storage-mux.js';
import { commonMuxOptions, unreadableAnswer } from './storage-mux-common.js';

/** The tool's name, looked up on PATH. */
const TOOL = 'usbsdmux';

const schema = z.strictObject({
  driver: z.literal('usbsdmux'),
  sg: z.string().regex(/^\/\S+$/, { error: "expected the absolute path of the mux's /dev/sg* node" }),
  ...commonMuxOptions,
});

/** argv of one usbsdmux call. */
export function usbsdmuxArgv(sg: string, mode: 'host' | 'dut' | 'get'): string[] {
  return [TOOL, sg, mode];
}

/** Reads `get` output; `off` (connected to neither side) is reported as unknown, garbage undefined. */
export function sideFromUsbsdmuxGet(stdout: string): MuxSide | undefined {
  const word = stdout.trim().toLowerCase();
  if (word === 'host') return 'host';
  if (word === 'dut') return 'dut';
  if (word === 'off') return 'unknown';
  return undefined;
}

/** The `usbsdmux` driver: `{ driver: usbsdmux, sg, timeoutMs? }`. */
export const usbsdmuxStorageMuxDriver: StorageMuxFactory<typeof schema> = {
  name: 'usbsdmux',
  configSchema: schema,
  create(config, ctx) {
    const options = { timeoutMs: config.timeoutMs, what: `usbsdmux storage mux of ${ctx.dutName}` };
    return {
      toHost: async () => {
        await runCommand(usbsdmuxArgv(config.sg, 'host'), options);
      },
      toDut: async () => {
        await runCommand(usbsdmuxArgv(config.sg, 'dut'), options);
      },
      status: async () => {
        const argv = usbsdmuxArgv(config.sg, 'get');
        const { stdout } = await runCommand(argv, options);
        const side = sideFromUsbsdmuxGet(stdout);
        if (side !== undefined) return side;
        throw unreadableAnswer(`${options.what}: ${argv.join(' ')}`, 'host, dut or off', stdout);
      },
    };
  },
};
