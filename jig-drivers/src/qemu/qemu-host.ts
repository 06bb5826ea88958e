/**
 * qemu-host: owns one QEMU DUT for as long as it runs. It holds the DUT's UART (a pty behind a
 * stable link), its disk image and a control socket; "power on" starts QEMU, "power off" ends it,
 * and the storage mux decides whether QEMU gets the disk or the host may write it. Requests run
 * one at a time, in arrival order, like the buttons of one bench power supply.
 */
import { access, constants, mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { failedPrecondition, invalidArgument, JigletError } from '../../../protocol/src/errors.js';
import { PtyBridge } from '../pty-bridge.js';
import {
  formatError,
  formatState,
  MAX_REQUEST_LINE,
  parseRequest,
  type QemuHostRequest,
  type QemuHostState,
} from './qemu-control.js';
import { claimSocketPath, createBlankDisk, linkAtomically, unlinkIfLinkTo } from './qemu-host-files.js';
import { QemuMachine, type QemuMachineOptions } from './qemu-machine.js';

/** How it is set up; paths may be relative to the working directory. */
export interface QemuHostOptions
  extends Pick<
    QemuMachineOptions,
    'name' | 'qemu' | 'accel' | 'memoryMiB' | 'kernel' | 'initrd' | 'append' | 'sshPort'
  > {
  /** The control socket to listen on. */
  controlSocket: string;
  /** The symlink to point at the UART pty (the jig's `serial.path`). */
  uartLink: string;
  /** The raw disk image; created empty (sparse, `diskSizeBytes`) when missing, like a blank card. */
  disk: string;
  /** Size of a disk image created because none existed. */
  diskSizeBytes: number;
  /** The python3 that runs the pty helper. */
  python?: string;
  /** Receives what happens: power and mux changes, QEMU's stderr, a dead UART helper. */
  onEvent?(event: QemuHostEvent): void;
}

/** Something a running qemu-host reports (as one line of its stdout, in the command). */
export type QemuHostEvent =
  | { type: 'power'; state: 'on' | 'off'; reason: string }
  | { type: 'mux'; side: 'host' | 'dut'; note?: string }
  | { type: 'qemu-stderr'; text: string }
  | { type: 'uart-exit'; code: number | null; signal: string | null };

/** A running qemu-host. */
export class QemuHost {
  /** The UART's pty, e.g. `/dev/pts/4` (`uartLink` points here). */
  readonly device: string;
  readonly #options: QemuHostOptions;
  readonly #bridge: PtyBridge;
  readonly #server: Server;
  readonly #connections = new Set<Socket>();
  #machine: QemuMachine | undefined;
  #mux: 'host' | 'dut' = 'dut';
  #queue: Promise<unknown> = Promise.resolve();
  #stopping: Promise<void> | undefined;

  private constructor(options: QemuHostOptions, bridge: PtyBridge, server: Server) {
    this.#options = options;
    this.#bridge = bridge;
    this.#server = server;
    this.device = bridge.device;
    bridge.on('exit', (code: number | null, signal: string | null) => {
      if (!this.#stopping) options.onEvent?.({ type: 'uart-exit', code, signal });
    });
    server.on('connection', (socket) => this.#serve(socket));
  }

  /** Checks the boot files, creates the disk if missing, opens the UART, links it and listens. */
  static async start(given: QemuHostOptions): Promise<QemuHost> {
    const options = {
      ...given,
      controlSocket: path.resolve(given.controlSocket),
      uartLink: path.resolve(given.uartLink),
      disk: path.resolve(given.disk),
      kernel: path.resolve(given.kernel),
      initrd: path.resolve(given.initrd),
    };
    for (const [flag, file] of [
      ['--kernel', options.kernel],
      ['--initrd', options.initrd],
    ] as const) {
      await access(file, constants.R_OK).catch((error: Error) => {
        throw invalidArgument(`${flag}: cannot read ${file}: ${error.message}`);
      });
    }
    for (const file of [options.controlSocket, options.uartLink, options.disk]) {
      await mkdir(path.dirname(file), { recursive: true });
    }
    await createBlankDisk(options.disk, options.diskSizeBytes);
    await claimSocketPath(options.controlSocket);
    let host: QemuHost | undefined;
    const bridge = await PtyBridge.open((bytes) => {
      // Keystrokes while QEMU is off are lost, as on a UART whose board has no power.
      if (host) host.#machine?.writeSerial(bytes);
    }, options.python);
    try {
      await linkAtomically(bridge.device, options.uartLink);
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.controlSocket, () => {
          server.off('error', reject);
          resolve();
        });
      });
      host = new QemuHost(options, bridge, server);
      return host;
    } catch (error) {
      await bridge.close();
      await unlinkIfLinkTo(options.uartLink, bridge.device);
      throw error;
    }
  }

  /** Where power and the disk are now. */
  get state(): QemuHostState {
    return { power: this.#machine ? 'on' : 'off', mux: this.#mux };
  }

  /** Runs one request after those before it, and resolves with the state after it. */
  request(request: QemuHostRequest): Promise<QemuHostState> {
    const run = this.#queue.then(async () => {
      if (this.#stopping)
        throw new JigletError('JIGLET_E_UNAVAILABLE', `${this.#options.name}: qemu-host is stopping`);
      if (request.kind === 'power' && request.action === 'on') await this.#powerOn();
      else if (request.kind === 'power' && request.action === 'off')
        await this.#powerOff('power off requested');
      else if (request.kind === 'mux' && request.action !== 'status') this.#switchMux(request.action);
      return this.state;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Stops serving, powers the DUT off, ends the UART and removes the link and socket. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const socket of this.#connections) socket.destroy();
      await closed;
      await this.#queue;
      await this.#powerOff('qemu-host stopped');
      await this.#bridge.close();
      await unlinkIfLinkTo(this.#options.uartLink, this.device);
    })();
    return this.#stopping;
  }

  async #powerOn(): Promise<void> {
    if (this.#machine) return;
    const options = this.#options;
    const disk = this.#mux === 'dut' ? options.disk : undefined;
    const { name, qemu, accel, memoryMiB, kernel, initrd, append, sshPort } = options;
    const machine = await QemuMachine.start({
      ...{ name, qemu, accel, memoryMiB, kernel, initrd, append },
      ...(disk ? { disk } : {}),
      ...(sshPort ? { sshPort } : {}),
      onSerial: (bytes) => this.#bridge.write(bytes),
      onStderr: (text) => options.onEvent?.({ type: 'qemu-stderr', text }),
    });
    this.#machine = machine;
    options.onEvent?.({
      type: 'power',
      state: 'on',
      reason: disk ? `disk ${disk}` : 'no disk (muxed to host)',
    });
    // The guest may end QEMU itself (poweroff); then the DUT is off without anyone asking.
    machine.exited.then(({ code, signal }) => {
      if (this.#machine !== machine) return;
      this.#machine = undefined;
      options.onEvent?.({
        type: 'power',
        state: 'off',
        reason: `QEMU exited (code ${code}, signal ${signal})`,
      });
    });
  }

  async #powerOff(reason: string): Promise<void> {
    const machine = this.#machine;
    if (!machine) return;
    this.#machine = undefined;
    await machine.stop();
    this.#options.onEvent?.({ type: 'power', state: 'off', reason });
  }

  #switchMux(side: 'host' | 'dut'): void {
    const name = this.#options.name;
    if (side === 'host' && this.#machine) {
      throw failedPrecondition(`${name}: cannot switch the disk to the host while the DUT is powered on`);
    }
    if (this.#mux === side) return;
    this.#mux = side;
    // QEMU got no disk at this power-on; like a board, it sees the medium from its next boot.
    const note = this.#machine ? 'the running DUT sees the disk from its next power-on' : undefined;
    this.#options.onEvent?.({ type: 'mux', side, ...(note ? { note } : {}) });
  }

  #serve(socket: Socket): void {
    this.#connections.add(socket);
    socket.on('close', () => this.#connections.delete(socket));
    // A client that vanishes mid-answer is its own problem; its request still ran.
    socket.on('error', () => undefined);
    socket.setEncoding('utf8');
    let buffer = '';
    let answered: Promise<unknown> = Promise.resolve();
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        answered = answered.then(async () => {
          let reply: string;
          try {
            reply = formatState(await this.request(parseRequest(line)));
          } catch (error) {
            reply = formatError(error);
          }
          if (!socket.destroyed) socket.write(reply);
        });
      }
      if (buffer.length > MAX_REQUEST_LINE) {
        socket.end(formatError(invalidArgument(`request line longer than ${MAX_REQUEST_LINE} bytes`)));
        buffer = '';
      }
    });
  }
}
