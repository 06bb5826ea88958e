/**
 * `jig-driver qemu-host`: runs one QEMU DUT as a long-lived service of the agent.
 *   jig-driver qemu-host --name qdut-1 --control SOCKET --uart LINK --disk FILE --kernel K --initrd I
 *                        [--memory 256] [--accel tcg|kvm] [--qemu qemu-system-x86_64]
 *                        [--append WORDS] [--disk-size-mib 64] [--ssh-port PORT]
 * Once it listens it prints `ready {"name","control","uart","device","disk","power","mux"}` (plus
 * `"ssh":{"host":"127.0.0.1","port":PORT}` with --ssh-port: the DUT's SSH server, once booted), then one
 * line per change (`power on (disk …)`, `power off (…)`, `mux host`); QEMU's own messages go to
 * stderr. SIGTERM or SIGINT powers the DUT off, removes the link and socket, and exits 0. The
 * control protocol is described in qemu-control.ts. Needs qemu-system-x86, python3 and setpriv.
 */
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { invalidArgument } from '../../../protocol/src/errors.js';
import { QemuHost, type QemuHostEvent } from './qemu-host.js';
import { SSH_FORWARD_HOST } from './qemu-machine.js';

/** The options of `qemu-host`, as yargs parses them. */
export interface QemuHostArgs {
  /** The DUT's name. */
  name: string;
  /** Control socket path. */
  control: string;
  /** UART link path. */
  uart: string;
  /** Disk image path. */
  disk: string;
  /** Kernel image. */
  kernel: string;
  /** Initramfs. */
  initrd: string;
  /** Guest RAM in MiB. */
  memory: number;
  /** Accelerator: `tcg` (software, the default) or `kvm`. */
  accel: 'kvm' | 'tcg';
  /** QEMU executable. */
  qemu: string;
  /** Extra kernel command line. */
  append: string;
  /** Size of a disk image created because none existed, in MiB. */
  'disk-size-mib': number;
  /** Host port on 127.0.0.1 forwarded to the DUT's SSH port; 0 = no network card. */
  'ssh-port': number;
}

/** What a DUT name looks like in a jig description. */
const DUT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The options of `runQemuHost`: those of the command, camel-cased. */
export type RunQemuHostOptions = Omit<QemuHostArgs, 'disk-size-mib' | 'ssh-port'> & {
  diskSizeMib: number;
  /** Host port forwarded to the DUT's port 22; absent or 0 = no network card. */
  sshPort?: number;
};

/** One stdout line per event, for the service's job log. */
function eventLine(event: QemuHostEvent): string {
  if (event.type === 'power') return `power ${event.state} (${event.reason})`;
  if (event.type === 'mux') return `mux ${event.side}${event.note ? ` (${event.note})` : ''}`;
  if (event.type === 'uart-exit') return `uart helper exited (code ${event.code}, signal ${event.signal})`;
  return `qemu: ${event.text.trimEnd()}`;
}

/** Runs qemu-host until SIGTERM/SIGINT (exit code 0) or until its UART helper dies (exit code 1). */
export async function runQemuHost(args: RunQemuHostOptions): Promise<void> {
  // The name goes into QEMU's option syntax and the kernel command line: no commas, no spaces.
  if (!DUT_NAME.test(args.name))
    throw invalidArgument(`--name: expected a DUT name (${DUT_NAME}), got ${JSON.stringify(args.name)}`);
  if (!Number.isInteger(args.memory) || args.memory < 16)
    throw invalidArgument('--memory: expected MiB >= 16');
  if (!Number.isInteger(args.diskSizeMib) || args.diskSizeMib < 1) {
    throw invalidArgument('--disk-size-mib: expected a whole number >= 1');
  }
  const sshPort = args.sshPort ?? 0;
  if (!Number.isInteger(sshPort) || sshPort < 0 || sshPort > 65535) {
    throw invalidArgument(`--ssh-port: expected a TCP port (1-65535, or 0 for no network), got ${sshPort}`);
  }
  let finish: (exitCode: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const host = await QemuHost.start({
    name: args.name,
    controlSocket: args.control,
    uartLink: args.uart,
    disk: args.disk,
    diskSizeBytes: args.diskSizeMib * 1024 * 1024,
    kernel: args.kernel,
    initrd: args.initrd,
    memoryMiB: args.memory,
    qemu: args.qemu,
    accel: args.accel,
    append: args.append,
    ...(sshPort ? { sshPort } : {}),
    onEvent: (event) => {
      const line = `${eventLine(event)}\n`;
      if (event.type === 'qemu-stderr' || event.type === 'uart-exit') process.stderr.write(line);
      else process.stdout.write(line);
      // A DUT without its UART is no DUT: end loudly so the agent restarts the service.
      if (event.type === 'uart-exit') finish(1);
    },
  });
  const onSignal = (): void => finish(0);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const [control, uart, disk] = [args.control, args.uart, args.disk].map((file) => path.resolve(file));
  const ssh = sshPort ? { ssh: { host: SSH_FORWARD_HOST, port: sshPort } } : {};
  const ready = { name: args.name, control, uart, device: host.device, disk, ...host.state, ...ssh };
  process.stdout.write(`ready ${JSON.stringify(ready)}\n`);
  try {
    process.exitCode = await finished;
    await host.stop();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** The yargs command module of `qemu-host`. */
export const qemuHostCommand: CommandModule<object, QemuHostArgs> = {
  command: 'qemu-host',
  describe: 'run one QEMU DUT: power and storage mux on a control socket, its UART on a pty',
  builder: (y: Argv) =>
    y
      .option('name', { type: 'string', demandOption: true, describe: 'DUT name (guest hostname)' })
      .option('control', { type: 'string', demandOption: true, describe: 'control socket path' })
      .option('uart', { type: 'string', demandOption: true, describe: 'symlink to create for the UART pty' })
      .option('disk', { type: 'string', demandOption: true, describe: 'raw disk image (virtio-blk)' })
      .option('kernel', { type: 'string', demandOption: true, describe: 'kernel image' })
      .option('initrd', { type: 'string', demandOption: true, describe: 'initramfs' })
      .option('memory', { type: 'number', default: 256, describe: 'guest RAM in MiB' })
      // TCG by default: a /dev/kvm that opens proves nothing (nested setups hang at boot or abort
      // on an MSR); hosts known to have working KVM pass --accel kvm.
      .option('accel', { choices: ['tcg', 'kvm'] as const, default: 'tcg' as const, describe: 'accelerator' })
      .option('qemu', { type: 'string', default: 'qemu-system-x86_64', describe: 'QEMU executable' })
      .option('append', { type: 'string', default: '', describe: 'extra kernel command line' })
      .option('disk-size-mib', {
        type: 'number',
        default: 64,
        describe: 'size of a disk created if missing',
      })
      .option('ssh-port', {
        type: 'number',
        default: 0,
        describe: "host port on 127.0.0.1 forwarded to the DUT's SSH server (0: no network card)",
      }),
  handler: (args) => runQemuHost(args),
};
