/**
 * Power through a "USBRelay" HID board (see usb-hid-relay-protocol.ts for the bytes). Boards have
 * no USB serial number, only a 5-character serial inside their feature report, so choosing one of
 * several boards means opening each and reading that report.
 */
import { z } from 'zod';
import { failedPrecondition, JigletError, notFound } from '../../protocol/src/errors.js';
import { abortable, withDeadline } from './deadline.js';
import { commonPowerOptions, makePowerSwitch, type PowerDriverFactory } from './power.js';
import {
  GET_FEATURE_REPORT,
  HID_RELAY_REPORT_LENGTH,
  isRelayOn,
  parseRelayReport,
  relayCommand,
  relayCountFromProduct,
  SET_FEATURE_REPORT,
} from './usb-hid-relay-protocol.js';
import {
  closeAll,
  type HidRelayHandle,
  type HidRelayTransport,
  libusbHidRelayTransport,
} from './usb-hid-relay-transport.js';

const schema = z.strictObject({
  driver: z.literal('usb-hid-relay'),
  relay: z.number().int().min(1).max(8),
  serial: z
    .string()
    .regex(/^[\x20-\x7e]{1,5}$/, { error: 'expected the board serial: 1 to 5 ASCII characters' })
    .optional(),
  ...commonPowerOptions,
});

type HidRelayConfig = z.output<typeof schema>;

/** An opened board with its decoded report. */
interface Board {
  handle: HidRelayHandle;
  serial: string;
  states: number;
}

async function readBoard(handle: HidRelayHandle): Promise<Board> {
  const report = await handle.controlIn(GET_FEATURE_REPORT, HID_RELAY_REPORT_LENGTH);
  return { handle, ...parseRelayReport(report) };
}

/** Picks the configured board among those attached; refuses to guess between several. */
function choose(boards: Board[], config: HidRelayConfig, what: string): Board {
  const serials = boards.map((board) => JSON.stringify(board.serial)).join(', ');
  if (config.serial !== undefined) {
    const board = boards.find((candidate) => candidate.serial === config.serial);
    if (!board)
      throw notFound(`${what}: no board with serial "${config.serial}" (attached: ${serials || 'none'})`);
    return board;
  }
  if (boards.length === 0) throw notFound(`${what}: no USB HID relay board attached`);
  if (boards.length > 1)
    throw failedPrecondition(`${what}: ${boards.length} boards attached (${serials}); set "serial"`);
  return boards[0]!;
}

/** Builds the `usb-hid-relay` driver around a transport (tests pass a fake: no USB exists there). */
export function createUsbHidRelayPowerDriver(
  transport: HidRelayTransport = libusbHidRelayTransport,
): PowerDriverFactory<typeof schema> {
  return {
    name: 'usb-hid-relay',
    configSchema: schema,
    create(config, ctx) {
      const what = `USB HID relay ${config.relay} of ${ctx.dutName}`;
      // Every action opens, acts and closes: the board is shared with other DUTs' relays and with
      // other jobs, and must not stay detached from the kernel between actions.
      const withBoard = <T>(act: (board: Board) => Promise<T>): Promise<T> =>
        withDeadline(config.timeoutMs, what, async (signal) => {
          const opening = transport.openAll(config.timeoutMs);
          // If the deadline passes while boards are still opening, close them once they are open;
          // nobody waits for that any more, so a close failure there has no one to report to.
          let opened = false;
          const closeLate = () => {
            if (!opened) void opening.then(closeAll).catch(() => undefined);
          };
          signal.addEventListener('abort', closeLate, { once: true });
          const handles = await abortable(opening, signal);
          opened = true;
          let result: T;
          try {
            const boards = await abortable(Promise.all(handles.map(readBoard)), signal);
            const board = choose(boards, config, what);
            const count = relayCountFromProduct(board.handle.product);
            if (count !== undefined && config.relay > count) {
              throw failedPrecondition(
                `${what}: board "${board.serial}" (${board.handle.product}) has only ${count} relays`,
              );
            }
            result = await abortable(act(board), signal);
          } catch (error) {
            await closeAll(handles).catch((closeError: unknown) => {
              if (error instanceof Error && error.cause === undefined) error.cause = closeError;
            });
            throw error;
          }
          await closeAll(handles);
          return result;
        });
      const set = (on: boolean) =>
        withBoard(async (board) => {
          await board.handle.controlOut(SET_FEATURE_REPORT, relayCommand(config.relay, on));
          // Read back: the firmware ignores a command for a relay it lacks without any error.
          const after = await readBoard(board.handle);
          if (isRelayOn(after.states, config.relay) !== on) {
            throw new JigletError(
              'JIGLET_E_UNAVAILABLE',
              `${what}: relay did not switch ${on ? 'on' : 'off'} (state bits ${after.states.toString(2)})`,
            );
          }
        });
      return makePowerSwitch(
        {
          on: () => set(true),
          off: () => set(false),
          status: () => withBoard(async (board) => (isRelayOn(board.states, config.relay) ? 'on' : 'off')),
        },
        config,
      );
    },
  };
}

/** The `usb-hid-relay` driver: `{ driver: usb-hid-relay, relay: 1..8, serial?, offTimeMs?, timeoutMs? }`. */
export const usbHidRelayPowerDriver = createUsbHidRelayPowerDriver();
