/**
 * The QEMU DUT's network and SSH server (issue 15): qemu-host --ssh-port forwards a loopback port
 * to dropbear in the initramfs, reached here with Debian's OpenSSH client (ssh, sftp,
 * ssh-keyscan) and the client key build-image.sh made. Three boots (~8 s each under TCG), in the
 * wall time of two: the first checks commands and SFTP; then the same disk boots again (its host
 * key must be kept) beside a copy of it with another image written over the start (the key must
 * be new), on a second qemu-host.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildImage } from '../../../fixtures/images/build-image.js';
import type { PowerSwitch } from '../../src/power.js';
import { qemuPowerDriver, qemuStorageMuxDriver } from '../../src/qemu/index.js';
import type { StorageMux } from '../../src/storage-mux.js';
import {
  IMAGE_BUILD_TIMEOUT_MS,
  QemuHostProcess,
  type QemuHostReady,
  qemuImage,
  UartReader,
} from './qemu-support.js';
import { freePort, SshClient } from './ssh-client.js';

/** From power-on to the login prompt; a TCG boot takes ~6-10 s on a 2-core runner, two at once more. */
const BOOT_TIMEOUT_MS = 180_000;
/** From the login prompt to an SSH server answering (dropbear starts beside the getty). */
const SSH_UP_TIMEOUT_MS = 60_000;
/** The disk: room for the image and, after it, the host key record (the last 64 KiB). */
const DISK_MIB = 8;
/** Small images boot faster: the init hashes the whole payload. */
const IMAGE_BYTES = 4 * 1024 * 1024;

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** One QEMU DUT with SSH: its qemu-host, UART, power, storage mux and an OpenSSH client. */
interface SshDut {
  host: QemuHostProcess;
  ready: QemuHostReady;
  sshPort: number;
  uart: UartReader;
  power: PowerSwitch;
  mux: StorageMux;
  ssh: SshClient;
  knownHosts: string;
}

describe('QEMU DUT over SSH (dropbear in the initramfs, OpenSSH client)', function () {
  this.timeout(IMAGE_BUILD_TIMEOUT_MS);
  let dir: string;
  let first: SshDut;
  let second: SshDut;
  let firstKey: string;

  async function startDut(name: string): Promise<SshDut> {
    const image = await qemuImage();
    const sshPort = await freePort();
    const at = (file: string): string => path.join(dir, `${name}-${file}`);
    const host = new QemuHostProcess([
      ...['--name', name, '--control', at('control.sock'), '--uart', at('uart')],
      ...['--disk', at('disk.img'), '--disk-size-mib', String(DISK_MIB)],
      ...['--kernel', image.kernel, '--initrd', image.initrd, '--ssh-port', String(sshPort)],
    ]);
    const ready = await host.ready();
    const uart = await UartReader.open(ready.uart);
    const config = { driver: 'qemu', socket: ready.control };
    const knownHosts = at('known_hosts');
    return {
      ...{ host, ready, sshPort, uart, knownHosts },
      power: qemuPowerDriver.create(qemuPowerDriver.configSchema.parse(config), { dutName: name }),
      mux: qemuStorageMuxDriver.create(qemuStorageMuxDriver.configSchema.parse(config), { dutName: name }),
      ssh: new SshClient({ host: '127.0.0.1', port: sshPort }, image.sshKey, knownHosts),
    };
  }

  /**
   * Writes an image over the start of the DUT's disk in place, as a flash to a card does: the
   * bytes after the image (the host key record) stay.
   */
  async function flashInPlace(dut: SshDut, version: string): Promise<void> {
    await dut.mux.toHost();
    const file = path.join(dir, `image-${version}.img`);
    await buildImage({ out: file, version, sizeBytes: IMAGE_BYTES });
    const disk = await open(dut.ready.disk, 'r+');
    try {
      await disk.write(await readFile(file), 0, IMAGE_BYTES, 0);
      await disk.sync();
    } finally {
      await disk.close();
    }
    await dut.mux.toDut();
  }

  /** Powers on, waits for the login prompt, then for the SSH server; trusts and returns its key. */
  async function bootToSsh(dut: SshDut): Promise<{ hostKey: string; console: string }> {
    dut.uart.mark();
    await dut.power.on();
    await dut.uart.waitFor(/login: $/, BOOT_TIMEOUT_MS);
    const hostKey = await dut.ssh.hostKey(SSH_UP_TIMEOUT_MS);
    await writeFile(dut.knownHosts, dut.ssh.knownHostsLine(hostKey));
    return { hostKey, console: dut.uart.text };
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-ssh-'));
    [first, second] = await Promise.all([startDut('qdut-s1'), startDut('qdut-s2')]);
  });

  after(async () => {
    const duts = [first, second].filter((dut) => dut !== undefined);
    await Promise.all(duts.map((dut) => dut.uart.close()));
    const exits = await Promise.all(duts.map((dut) => dut.host.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
    for (const [i, { code }] of exits.entries()) {
      assert.equal(code, 0, `qemu-host stderr: ${duts[i]?.host.stderr}`);
    }
  });

  it('names the SSH forward (loopback only) in its ready line', () => {
    assert.deepEqual(first.ready.ssh, { host: '127.0.0.1', port: first.sshPort });
  });

  it('runs commands over SSH with their exit status and stderr apart, and copies files over SFTP', async function () {
    this.timeout(BOOT_TIMEOUT_MS + SSH_UP_TIMEOUT_MS + 60_000);
    const { ssh } = first;
    await flashInPlace(first, '1.2.3');
    const started = performance.now();
    const boot = await bootToSsh(first);
    console.log(
      `      TCG boot: SSH answers ${((performance.now() - started) / 1000).toFixed(1)} s after power-on`,
    );
    firstKey = boot.hostKey;
    assert.match(boot.console, /ssh: new host key for this image, recorded on the disk/);

    // The same kernel release the loader printed on the serial console.
    const release = /JigletOS loader on Linux (\S+) /.exec(boot.console)?.[1];
    assert.ok(release, 'the loader names the kernel on the console');
    assert.deepEqual(await ssh.exec('uname -r'), { code: 0, stdout: `${release}\n`, stderr: '' });
    assert.equal((await ssh.exec("sh -c 'exit 7'")).code, 7);
    assert.deepEqual(await ssh.exec('echo out; echo err >&2; exit 3'), {
      code: 3,
      stdout: 'out\n',
      stderr: 'err\n',
    });

    const upload = randomBytes(300 * 1024);
    const local = path.join(dir, 'upload.bin');
    const back = path.join(dir, 'download.bin');
    await writeFile(local, upload);
    const copy = await ssh.sftp([`put ${local} /tmp/upload.bin`, `get /tmp/upload.bin ${back}`]);
    assert.equal(copy.code, 0, copy.stderr);
    assert.equal(sha256(await readFile(back)), sha256(upload));
    const remote = await ssh.exec('sha256sum /tmp/upload.bin');
    assert.equal(remote.stdout.split(' ')[0], sha256(upload));
    await first.power.off();
  });

  it('keeps its host key across a power cycle, and makes a new one once another image is written', async function () {
    this.timeout(BOOT_TIMEOUT_MS + SSH_UP_TIMEOUT_MS + 60_000);
    assert.ok(firstKey, 'the first boot ran');
    // The second DUT gets the first one's disk (image and host key record), then another image.
    await second.mux.toHost();
    await copyFile(first.ready.disk, second.ready.disk);
    await flashInPlace(second, '1.2.4');

    const [again, reflashed] = await Promise.all([bootToSsh(first), bootToSsh(second)]);
    assert.equal(again.hostKey, firstKey);
    assert.match(again.console, /ssh: host key kept from an earlier boot of this image/);
    assert.equal((await first.ssh.exec('true')).code, 0);

    assert.notEqual(reflashed.hostKey, firstKey);
    assert.match(reflashed.console, /Booting JigletOS 1\.2\.4 from disk/);
    assert.match(reflashed.console, /ssh: new host key for this image, recorded on the disk/);
    assert.deepEqual(await second.ssh.exec('. /etc/os-release && echo $VERSION_ID'), {
      code: 0,
      stdout: '1.2.4\n',
      stderr: '',
    });
    await Promise.all([first.power.off(), second.power.off()]);
  });
});
