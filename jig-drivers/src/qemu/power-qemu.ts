/**
 * Power of a QEMU DUT: asks the DUT's qemu-host (see qemu-host-command.ts) on its control socket
 * to start or end QEMU, and checks the state it answers.
 */
import { z } from 'zod';
import { JigletError } from '../../../protocol/src/errors.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory } from '../power.js';
import { type QemuHostTarget, qemuHostRequest } from './qemu-control.js';

/**
 * Starting QEMU takes well under a second, but "off" may wait for QEMU's own quit, SIGTERM and
 * SIGKILL grace periods (seven seconds in all) on a CPU that TCG keeps busy.
 */
export const QEMU_POWER_TIMEOUT_MS = 30_000;

const schema = z.strictObject({
  driver: z.literal('qemu'),
  socket: z.string().startsWith('/', { error: 'expected the absolute path of a qemu-host control socket' }),
  ...commonPowerOptions,
  // A virtual machine has no rails to drain.
  offTimeMs: commonPowerOptions.offTimeMs.unwrap().default(0),
  timeoutMs: commonPowerOptions.timeoutMs.unwrap().default(QEMU_POWER_TIMEOUT_MS),
});

/** The `qemu` power driver: `{ driver: qemu, socket, offTimeMs?, timeoutMs? }`. */
export const qemuPowerDriver: PowerDriverFactory<typeof schema> = {
  name: 'qemu',
  configSchema: schema,
  create(config, ctx) {
    const target: QemuHostTarget = {
      socket: config.socket,
      timeoutMs: config.timeoutMs,
      what: `qemu power of ${ctx.dutName}`,
    };
    const setPower = async (want: 'on' | 'off'): Promise<void> => {
      const { power } = await qemuHostRequest(target, `power ${want}`);
      if (power !== want) {
        throw new JigletError(
          'JIGLET_E_UNAVAILABLE',
          `${target.what}: asked for ${want}, qemu-host reports ${power}`,
        );
      }
    };
    return makePowerSwitch(
      {
        on: () => setPower('on'),
        off: () => setPower('off'),
        status: async () => (await qemuHostRequest(target, 'power status')).power,
      },
      config,
    );
  },
};
