/**
 * The QEMU DUT's network and SSH server (issue 15): qemu-host --ssh-port forwards a loopback port
 * to dropbear in the initramfs, reached here with Debian's OpenSSH client (ssh, sftp,
 * ssh-keyscan) and the client key build-image.sh made. Three boots (~8 s each under TCG): the
 * first checks commands and SFTP, the second that the host key survives a power cycle, the third
 * that it changes once another image is written to the disk.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
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
  type QemuImage,
  qemuImage,
  UartReader,
} from './qemu-support.js';
import { freePort, SshClient } from './ssh-client.js';

/** From power-on to the login prompt; a TCG boot takes ~6-10 s on a 2-core runner. */
const BOOT_TIMEOUT_MS = 120_000;
/** From the login prompt to an SSH server answering (dropbear starts beside the getty). */
const SSH_UP_TIMEOUT_MS = 60_000;
/** The disk: room for the image and, after it, the host key record (the last 64 KiB). */
const DISK_MIB = 8;
/** Small images boot faster: the init hashes the whole payload. */
const IMAGE_BYTES = 4 * 1024 * 1024;

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

describe('QEMU DUT over SSH (dropbear in the initramfs, OpenSSH client)', function () {
  this.timeout(IMAGE_BUILD_TIMEOUT_MS);
  let dir: string;
  let image: QemuImage;
  let sshPort: number;
  let host: QemuHostProcess;
  let ready: QemuHostReady;
  let uart: UartReader;
  let power: PowerSwitch;
  let mux: StorageMux;
  let ssh: SshClient;
  let knownHosts: string;
  let firstKey: string;

  /**
   * Writes an image over the start of the disk in place, as a flash to a card does: the bytes
   * after the image (the host key record) stay.
   */
  async function flashInPlace(version: string): Promise<void> {
    await mux.toHost();
    const file = path.join(dir, `image-${version}.img`);
    await buildImage({ out: file, version, sizeBytes: IMAGE_BYTES });
    const disk = await open(ready.disk, 'r+');
    try {
      await disk.write(await readFile(file), 0, IMAGE_BYTES, 0);
      await disk.sync();
    } finally {
      await disk.close();
    }
    await mux.toDut();
  }

  /** Powers on, waits for the login prompt, then for the SSH server; returns its host key. */
  async function bootToSsh(): Promise<{ hostKey: string; console: string }> {
    uart.mark();
    await power.on();
    await uart.waitFor(/login: $/, BOOT_TIMEOUT_MS);
    const hostKey = await ssh.hostKey(SSH_UP_TIMEOUT_MS);
    await writeFile(knownHosts, ssh.knownHostsLine(hostKey));
    return { hostKey, console: uart.text };
  }

  before(async () => {
    image = await qemuImage();
    dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-ssh-'));
    knownHosts = path.join(dir, 'known_hosts');
    sshPort = await freePort();
    host = new QemuHostProcess([
      ...['--name', 'qdut-s', '--control', path.join(dir, 'control.sock'), '--uart', path.join(dir, 'uart')],
      ...['--disk', path.join(dir, 'disk.img'), '--disk-size-mib', String(DISK_MIB)],
      ...['--kernel', image.kernel, '--initrd', image.initrd, '--ssh-port', String(sshPort)],
    ]);
    ready = await host.ready();
    uart = await UartReader.open(ready.uart);
    const config = { driver: 'qemu', socket: ready.control };
    power = qemuPowerDriver.create(qemuPowerDriver.configSchema.parse(config), { dutName: 'qdut-s' });
    mux = qemuStorageMuxDriver.create(qemuStorageMuxDriver.configSchema.parse(config), { dutName: 'qdut-s' });
    ssh = new SshClient({ host: '127.0.0.1', port: sshPort }, image.sshKey, knownHosts);
  });

  after(async () => {
    await uart?.close();
    if (host) {
      const { code } = await host.stop();
      assert.equal(code, 0, `qemu-host stderr: ${host.stderr}`);
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names the SSH forward (loopback only) in its ready line', () => {
    assert.deepEqual(ready.ssh, { host: '127.0.0.1', port: sshPort });
  });

  it('runs commands over SSH with their exit status and stderr apart, and copies files over SFTP', async function () {
    this.timeout(BOOT_TIMEOUT_MS + SSH_UP_TIMEOUT_MS + 60_000);
    await flashInPlace('1.2.3');
    const started = performance.now();
    const boot = await bootToSsh();
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
  });

  it('keeps its host key across a power cycle', async function () {
    this.timeout(BOOT_TIMEOUT_MS + SSH_UP_TIMEOUT_MS + 30_000);
    assert.ok(firstKey, 'the first boot ran');
    await power.off();
    const boot = await bootToSsh();
    assert.equal(boot.hostKey, firstKey);
    assert.match(boot.console, /ssh: host key kept from an earlier boot of this image/);
    assert.equal((await ssh.exec('true')).code, 0);
  });

  it('makes a new host key once another image is written to the disk', async function () {
    this.timeout(BOOT_TIMEOUT_MS + SSH_UP_TIMEOUT_MS + 30_000);
    assert.ok(firstKey, 'the first boot ran');
    await power.off();
    await flashInPlace('1.2.4');
    const boot = await bootToSsh();
    assert.notEqual(boot.hostKey, firstKey);
    assert.match(boot.console, /Booting JigletOS 1\.2\.4 from disk/);
    assert.match(boot.console, /ssh: new host key for this image, recorded on the disk/);
    assert.deepEqual(await ssh.exec('. /etc/os-release && echo $VERSION_ID'), {
      code: 0,
      stdout: '1.2.4\n',
      stderr: '',
    });
    await power.off();
  });
});
