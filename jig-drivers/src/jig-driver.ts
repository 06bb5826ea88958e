#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import {
  driverEventLine,
  failureOf,
  POWER_ACTIONS,
  type PowerAction,
} from '../../protocol/src/driver-events.js';
import { invalidArgument, JigletError } from '../../protocol/src/errors.js';
import type { StepSink } from '../../protocol/src/step.js';
/**
 * `jig-driver`: the executable the agent runs as jobs for hardware actions, so power switching
 * and serial capture get the same logs, limits, stop and ownership as any other job.
 *   jig-driver power on|off|cycle|status --dut NAME --config JSON|@FILE
 *   jig-driver power-serve --dut NAME --config JSON|@FILE   (JSON requests on stdin, answers on stdout)
 *   jig-driver serial --path TTY | --usb JSON [--baud 115200] [--reopen-timeout-ms 60000]
 *   jig-driver flash --image PATH [--bmap PATH] [--no-verify] --device DEV --mux-json JSON|@FILE|none
 *   jig-driver qemu-host --name D --control SOCKET --uart LINK --disk FILE --kernel K --initrd I
 * Steps are printed to stderr as JSON lines (what, how long, how it failed), and a failure as a
 * JSON `failed` line with its code before the last, human line (protocol's driver-events.ts).
 */
import { readConfigArg } from './config-arg.js';
import { parseOrThrow } from './config-issues.js';
import type { PowerSwitch } from './power.js';
import { DEFAULT_REOPEN_TIMEOUT_MS } from './serial-defaults.js';
import { type UsbMatch, usbMatchSchema } from './usb-match.js';

/** Exit code for a bad invocation or configuration (sysexits EX_USAGE). */
const EXIT_USAGE = 64;

/** Prints each step as a JSON line on stderr, where the agent's readers look for it. */
const printStep: StepSink = (step) => {
  process.stderr.write(driverEventLine({ kind: 'step', step }));
};

async function power(action: PowerAction, dut: string, configJson: string): Promise<void> {
  let config: unknown;
  try {
    config = readConfigArg('--config', configJson);
  } catch (err) {
    throw new JigletError('JIGLET_E_INVALID_ARGUMENT', (err as Error).message);
  }
  // Loaded only for power: a serial capture runs for days and should not carry every driver (and libusb).
  const { builtinPowerRegistry } = await import('./power-registry.js');
  const registry = builtinPowerRegistry();
  const checked = registry.check(config);
  if (!checked.ok) throw new JigletError('JIGLET_E_INVALID_ARGUMENT', checked.problems.join('\n'));
  const sw = registry.create(checked.data, {
    dutName: dut,
    onStep: printStep,
  });
  if (action === 'status') process.stdout.write(`${await sw.status()}\n`);
  else await sw[action]();
}

/** The long-lived form of `power`: one process serving a DUT's power actions (power-serve.ts). */
async function powerServe(dut: string, configJson: string): Promise<void> {
  let config: unknown;
  try {
    config = readConfigArg('--config', configJson);
  } catch (err) {
    throw new JigletError('JIGLET_E_INVALID_ARGUMENT', (err as Error).message);
  }
  const [{ builtinPowerRegistry }, { servePower }] = await Promise.all([
    import('./power-registry.js'),
    import('./power-serve.js'),
  ]);
  const registry = builtinPowerRegistry();
  const checked = registry.check(config);
  if (!checked.ok) throw new JigletError('JIGLET_E_INVALID_ARGUMENT', checked.problems.join('\n'));
  const ctx = { dutName: dut, onStep: printStep };
  const base = registry.create(checked.data, ctx);
  // A cycle with its own off time gets its own switch, kept for the next one like it.
  const switches = new Map<number, PowerSwitch>();
  await servePower({
    input: process.stdin,
    output: process.stdout,
    switchFor: (offTimeMs) => {
      if (offTimeMs === undefined) return base;
      let sw = switches.get(offTimeMs);
      if (!sw) {
        sw = registry.create({ ...(checked.data as object), offTimeMs }, ctx);
        switches.set(offTimeMs, sw);
      }
      return sw;
    },
  });
}

/** Parses `--usb` (a UsbMatch as JSON); throws JIGLET_E_INVALID_ARGUMENT naming the problem. */
function parseUsbMatch(json: string): UsbMatch {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw invalidArgument(`--usb is not JSON: ${(err as Error).message}`);
  }
  return parseOrThrow(usbMatchSchema, value, '--usb');
}

async function serial(
  target: { path: string } | { usb: UsbMatch },
  baudRate: number,
  reopenTimeoutMs: number,
): Promise<void> {
  const controller = new AbortController();
  // Stopping the job (SIGTERM) ends the capture cleanly, also while still waiting for a USB
  // adapter: the port is closed, nothing is lost.
  const stop = (): void => controller.abort();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const common = {
    baudRate,
    out: process.stdout,
    input: process.stdin,
    reopen: { timeoutMs: reopenTimeoutMs },
    signal: controller.signal,
  };
  // Loaded only for a capture: a power action should not pay for serialport's native addon.
  if ('usb' in target) {
    const { runUsbSerialCapture } = await import('./serial-usb-capture.js');
    await runUsbSerialCapture({ ...common, match: target.usb });
  } else {
    const { runSerialCapture } = await import('./serial-capture.js');
    await runSerialCapture({ ...common, path: target.path });
  }
}

const FLASH_DESCRIBE = "flash a DUT's boot medium: mux to host, write, verify, mux back";
// The flasher (decompressors) and the mux drivers are loaded only for a flash: a serial capture
// runs for days and should not carry them.
const flash =
  process.argv[2] === 'flash'
    ? await (async () => {
        const [{ createFlashCommand }, { builtinStorageMuxRegistry }] = await Promise.all([
          import('./flash/flash-command.js'),
          import('./storage-mux-registry.js'),
        ]);
        return createFlashCommand({
          muxFromConfig: (config) =>
            builtinStorageMuxRegistry().create(config, {
              dutName: 'flash',
              onStep: printStep,
            }),
        });
      })()
    : undefined;

const QEMU_HOST_DESCRIBE = 'run one QEMU DUT (power, UART, disk) behind a control socket';
const qemuHost =
  process.argv[2] === 'qemu-host' ? (await import('./qemu/qemu-host-command.js')).qemuHostCommand : undefined;

try {
  await yargs(hideBin(process.argv))
    .scriptName('jig-driver')
    .strict()
    .command(
      'power <action>',
      'switch or read a DUT power input',
      (y) =>
        y
          .positional('action', { choices: POWER_ACTIONS, demandOption: true })
          .option('dut', { type: 'string', demandOption: true })
          .option('config', { type: 'string', demandOption: true, describe: 'power config as JSON' }),
      (argv) => power(argv.action, argv.dut, argv.config),
    )
    .command(
      'power-serve',
      "serve a DUT's power actions: JSON requests on stdin, one JSON answer line each on stdout",
      (y) =>
        y
          .option('dut', { type: 'string', demandOption: true })
          .option('config', { type: 'string', demandOption: true, describe: 'power config as JSON' }),
      (argv) => powerServe(argv.dut, argv.config),
    )
    .command(
      'serial',
      'capture a serial port to stdout as timestamped records; stdin goes to the port',
      (y) =>
        y
          .option('path', { type: 'string', describe: 'tty device path' })
          .option('usb', {
            type: 'string',
            describe: 'USB adapter match as JSON: {"vid","pid","serial","byPath"}',
          })
          .option('baud', { type: 'number', default: 115200 })
          .option('reopen-timeout-ms', { type: 'number', default: DEFAULT_REOPEN_TIMEOUT_MS })
          .check((argv) => {
            if ((argv.path === undefined) === (argv.usb === undefined)) {
              throw invalidArgument('serial: expected exactly one of --path and --usb');
            }
            return true;
          }),
      // --usb is parsed here, not in a yargs coerce, which would rewrap the coded error.
      (argv) =>
        serial(
          argv.usb === undefined ? { path: argv.path ?? '' } : { usb: parseUsbMatch(argv.usb) },
          argv.baud,
          argv.reopenTimeoutMs,
        ),
    )
    .command(flash ?? { command: 'flash', describe: FLASH_DESCRIBE, handler: () => undefined })
    .command(qemuHost ?? { command: 'qemu-host', describe: QEMU_HOST_DESCRIBE, handler: () => undefined })
    .demandCommand(1)
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`jig-driver: ${msg}\n`);
      process.exit(EXIT_USAGE);
    })
    .parseAsync();
} catch (err) {
  process.stderr.write(driverEventLine({ kind: 'failed', failure: failureOf(err) }));
  process.stderr.write(`jig-driver: ${(err as Error).message}\n`);
  process.exitCode = err instanceof JigletError && err.code === 'JIGLET_E_INVALID_ARGUMENT' ? EXIT_USAGE : 1;
}
