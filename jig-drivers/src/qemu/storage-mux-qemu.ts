/**
 * The storage mux of a QEMU DUT: asks its qemu-host to give the disk image to QEMU (`dut`) or to
 * the host (`host`, refused while QEMU runs, as the image would change under a running guest).
 * On the host side the medium is the image file itself, the jig's `storage.device.path`.
 */
import { z } from 'zod';
import { JigletError } from '../../../protocol/src/errors.js';
import type { StorageMuxFactory } from '../storage-mux.js';
import { commonMuxOptions } from '../storage-mux-common.js';
import { type QemuHostTarget, qemuHostRequest } from './qemu-control.js';

/** qemu-host switches at once, but answers only after requests queued before (a power-off included). */
export const QEMU_MUX_TIMEOUT_MS = 30_000;

const schema = z.strictObject({
  driver: z.literal('qemu'),
  socket: z.string().startsWith('/', { error: 'expected the absolute path of a qemu-host control socket' }),
  ...commonMuxOptions,
  timeoutMs: commonMuxOptions.timeoutMs.unwrap().default(QEMU_MUX_TIMEOUT_MS),
});

/** The `qemu` storage mux driver: `{ driver: qemu, socket, timeoutMs? }`. */
export const qemuStorageMuxDriver: StorageMuxFactory<typeof schema> = {
  name: 'qemu',
  configSchema: schema,
  create(config, ctx) {
    const target: QemuHostTarget = {
      socket: config.socket,
      timeoutMs: config.timeoutMs,
      what: `qemu storage mux of ${ctx.dutName}`,
    };
    const switchTo = async (side: 'host' | 'dut'): Promise<void> => {
      const { mux } = await qemuHostRequest(target, `mux ${side}`);
      if (mux !== side) {
        throw new JigletError(
          'JIGLET_E_UNAVAILABLE',
          `${target.what}: asked for ${side}, qemu-host reports ${mux}`,
        );
      }
    };
    return {
      toHost: () => switchTo('host'),
      toDut: () => switchTo('dut'),
      status: async () => (await qemuHostRequest(target, 'mux status')).mux,
    };
  },
};
