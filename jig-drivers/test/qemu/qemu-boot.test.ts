/**
 * The QEMU DUT end to end: Debian's kernel and the JigletOS initramfs (fixtures/qemu/build-image.sh),
 * qemu-host as a child process, the `qemu` power and storage mux drivers, and the UART read through
 * serialport on the real pty. Under TCG (no KVM) a boot takes seconds; every wait is on a line the
 * DUT prints, with a deadline.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildImage } from '../../../fixtures/images/build-image.js';
import { inspectImage } from '../../../fixtures/images/sample-image-layout.js';
import { waitUntil } from '../../../fixtures/test-support/wait-until.js';
import { JigletError } from '../../../protocol/src/errors.js';
import type { PowerSwitch } from '../../src/power.js';
import { qemuHostRequest, qemuPowerDriver, qemuStorageMuxDriver } from '../../src/qemu/index.js';
import type { StorageMux } from '../../src/storage-mux.js';
import {
  IMAGE_BUILD_TIMEOUT_MS,
  QemuHostProcess,
  type QemuHostReady,
  qemuImage,
  UartReader,
} from './qemu-support.js';

/** From power-on to the login prompt; a TCG boot takes ~6-10 s on a 2-core runner. */
const BOOT_TIMEOUT_MS = 120_000;
/** A prompt or command answer once the system runs. */
const ANSWER_TIMEOUT_MS = 30_000;
const VERSION = '1.2.3';
/** Small images boot faster: the init hashes the whole payload. */
const IMAGE_BYTES = 4 * 1024 * 1024;

describe('QEMU DUT (real kernel under QEMU)', function () {
  this.timeout(IMAGE_BUILD_TIMEOUT_MS);
  let dir: string;
  let host: QemuHostProcess;
  let ready: QemuHostReady;
  let uart: UartReader;
  let power: PowerSwitch;
  let mux: StorageMux;

  /** Flashes an image the way the agent does: medium to the host, write, medium back to the DUT. */
  async function flash(options: { corrupt?: boolean }): Promise<void> {
    await mux.toHost();
    await buildImage({ out: ready.disk, version: VERSION, sizeBytes: IMAGE_BYTES, ...options });
    await mux.toDut();
  }

  before(async () => {
    const image = await qemuImage();
    dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-boot-'));
    host = new QemuHostProcess([
      ...['--name', 'qdut-1', '--control', path.join(dir, 'control.sock'), '--uart', path.join(dir, 'uart')],
      ...['--disk', path.join(dir, 'disk.img'), '--kernel', image.kernel, '--initrd', image.initrd],
    ]);
    ready = await host.ready();
    uart = await UartReader.open(ready.uart);
    const dutName = 'qdut-1';
    power = qemuPowerDriver.create(
      qemuPowerDriver.configSchema.parse({ driver: 'qemu', socket: ready.control }),
      {
        dutName,
      },
    );
    mux = qemuStorageMuxDriver.create(
      qemuStorageMuxDriver.configSchema.parse({ driver: 'qemu', socket: ready.control }),
      { dutName },
    );
  });

  after(async () => {
    await uart?.close();
    if (host) {
      const { code } = await host.stop();
      assert.equal(code, 0, `qemu-host stderr: ${host.stderr}`);
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds a disk image in the format the virtual DUT shares (fixtures/images/sample-image-layout.ts)', async () => {
    const check = await inspectImage((await qemuImage()).disk);
    assert.equal(check.status, 'valid');
    assert.equal(check.status === 'valid' && check.header.version, '1.2.3');
  });

  it('boots a good image to a login, shows its version, and refuses the mux while on', async function () {
    this.timeout(BOOT_TIMEOUT_MS + 4 * ANSWER_TIMEOUT_MS);
    await flash({});
    uart.mark();
    const started = performance.now();
    await power.on();
    assert.equal(await power.status(), 'on');
    await uart.waitFor(
      new RegExp(`Booting JigletOS ${VERSION.replaceAll('.', '\\.')} from disk`),
      BOOT_TIMEOUT_MS,
    );
    const banner = performance.now();
    await uart.waitFor(/login: $/, BOOT_TIMEOUT_MS);
    const login = performance.now();
    console.log(
      `      TCG boot: banner after ${((banner - started) / 1000).toFixed(1)} s, ` +
        `login prompt after ${((login - started) / 1000).toFixed(1)} s`,
    );

    await assert.rejects(mux.toHost(), (error: unknown) => {
      assert.ok(error instanceof JigletError);
      assert.equal(error.code, 'JIGLET_E_FAILED_PRECONDITION');
      assert.match(error.message, /powered on/);
      return true;
    });
    assert.equal(await mux.status(), 'dut');

    await uart.type('root\r');
    await uart.waitFor(/Password: $/, ANSWER_TIMEOUT_MS);
    await uart.type('secret\r');
    await uart.waitFor(/\n# $/, ANSWER_TIMEOUT_MS);
    uart.mark();
    await uart.type('cat /etc/os-release\r');
    const answer = await uart.waitFor(/VERSION_ID=[^\r\n]*\r?\n[\s\S]*# $/, ANSWER_TIMEOUT_MS);
    assert.match(answer, new RegExp(`^VERSION_ID=${VERSION.replaceAll('.', '\\.')}\\r?$`, 'm'));

    // The guest powering itself off ends QEMU: the DUT is then off without anyone asking.
    await uart.type('poweroff -f\r');
    await host.until('the power-off line', () =>
      host.lines.some((l) => l.startsWith('power off (QEMU exited')),
    );
    assert.equal(await power.status(), 'off');
  });

  it('panics on a corrupt payload and never offers a login', async function () {
    this.timeout(BOOT_TIMEOUT_MS + ANSWER_TIMEOUT_MS);
    await flash({ corrupt: true });
    uart.mark();
    await power.on();
    // The panic is the last thing this boot prints (panic=0: the kernel then hangs), so it is the
    // event after which no login prompt can come.
    const output = await uart.waitFor(/Kernel panic - not syncing/, BOOT_TIMEOUT_MS);
    assert.match(output, /disk: checksum mismatch/);
    assert.doesNotMatch(output, /login:/);
    assert.doesNotMatch(output, /Booting JigletOS/);
    await power.off();
  });

  it('boots without its disk while the medium is on the host', async function () {
    this.timeout(BOOT_TIMEOUT_MS + ANSWER_TIMEOUT_MS);
    await flash({});
    await mux.toHost();
    uart.mark();
    await power.on();
    const output = await uart.waitFor(/Kernel panic - not syncing/, BOOT_TIMEOUT_MS);
    assert.match(output, /disk: no disk \/dev\/vda/);
    assert.doesNotMatch(output, /login:/);
    await power.off();
    await mux.toDut();
  });

  it('powers off on request and kept one UART pty across every power cycle', async () => {
    await power.on();
    await power.off();
    assert.equal(await power.status(), 'off');
    assert.equal(readlinkSync(ready.uart), ready.device);
    const powerLines = host.lines.filter((line) => line.startsWith('power '));
    assert.equal(powerLines.filter((line) => line.startsWith('power on')).length, 4, powerLines.join('\n'));
    assert.ok(powerLines.includes('power off (power off requested)'), powerLines.join('\n'));
  });
});

describe('qemu-host killed with SIGKILL', function () {
  this.timeout(IMAGE_BUILD_TIMEOUT_MS);
  let dir: string;

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('takes QEMU and the UART helper with it', async () => {
    const image = await qemuImage();
    dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-kill-'));
    const host = new QemuHostProcess([
      ...['--name', 'qdut-k', '--control', path.join(dir, 'control.sock'), '--uart', path.join(dir, 'uart')],
      ...['--disk', path.join(dir, 'disk.img'), '--kernel', image.kernel, '--initrd', image.initrd],
    ]);
    const ready = await host.ready();
    await qemuHostRequest({ socket: ready.control, timeoutMs: 30_000, what: 'test' }, 'power on');
    const children = descendants(host.child.pid!);
    assert.ok(children.length >= 2, `QEMU and the pty helper run under qemu-host: ${children}`);
    host.child.kill('SIGKILL');
    await host.exited;
    // Nothing signals "an orphan died" to this process: re-check /proc until they are gone.
    await waitUntil('QEMU and the helper to end', () => children.every((pid) => !alive(pid)), 10_000, 50);
  });
});

/** Every process below `pid`, from /proc/PID/task/TID/children. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const visit = (parent: number): void => {
    for (const task of readdirSync(`/proc/${parent}/task`)) {
      const text = readFileSync(`/proc/${parent}/task/${task}/children`, 'utf8').trim();
      for (const child of text ? text.split(' ').map(Number) : []) {
        found.push(child);
        visit(child);
      }
    }
  };
  visit(pid);
  return found;
}

/** Whether `pid` still runs (a zombie nobody reaped yet counts as ended). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
