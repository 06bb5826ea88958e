/**
 * qemu-host as the agent runs it (a child process printing `ready`), its control protocol, and the
 * `qemu` power and storage mux drivers against it. Nothing here boots Linux: QEMU is started only
 * with a kernel it refuses, to see that failure reported; qemu-boot.test.ts boots the real DUT.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, lstatSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { qemuPowerDriver, qemuStorageMuxDriver } from '../../src/qemu/index.js';
import { parseRequest, qemuHostRequest } from '../../src/qemu/qemu-control.js';
import { QemuHostProcess, type QemuHostReady } from './qemu-support.js';

/** Sends raw lines on one connection and collects `count` answer lines. */
function converse(socketPath: string, text: string, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(text));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split('\n').slice(0, -1);
      if (lines.length >= count) {
        socket.destroy();
        resolve(lines);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed after ${JSON.stringify(buffer)}`)));
  });
}

async function rejectsWithCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof JigletError, `expected a JigletError, got ${error}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe('qemu-host control protocol', () => {
  it('parses exactly the six requests', () => {
    assert.deepEqual(parseRequest('power on'), { kind: 'power', action: 'on' });
    assert.deepEqual(parseRequest('  mux   host \r'), { kind: 'mux', action: 'host' });
    assert.deepEqual(parseRequest('mux status'), { kind: 'mux', action: 'status' });
    for (const bad of ['', 'power', 'power cycle', 'mux on', 'power on now', 'status']) {
      assert.throws(() => parseRequest(bad), { code: 'JIGLET_E_INVALID_ARGUMENT' }, bad);
    }
  });

  it('reports a socket nobody serves as JIGLET_E_UNAVAILABLE', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-'));
    try {
      const target = { socket: path.join(dir, 'none.sock'), timeoutMs: 2000, what: 'test' };
      await rejectsWithCode(qemuHostRequest(target, 'power status'), 'JIGLET_E_UNAVAILABLE', /not running/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('qemu-host process', function () {
  this.timeout(120_000);
  let dir: string;
  let host: QemuHostProcess;
  let ready: QemuHostReady;
  const args = (): string[] => [
    ...['--name', 'qdut-t', '--control', path.join(dir, 'control.sock'), '--uart', path.join(dir, 'uart')],
    ...['--disk', path.join(dir, 'disk.img'), '--disk-size-mib', '8'],
    ...['--kernel', path.join(dir, 'not-a-kernel'), '--initrd', path.join(dir, 'not-an-initrd')],
  ];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'jiglet-qemu-'));
    // Files QEMU will refuse to boot: enough for everything but a real boot.
    await writeFile(path.join(dir, 'not-a-kernel'), 'this is not a bzImage\n');
    await writeFile(path.join(dir, 'not-an-initrd'), '');
    host = new QemuHostProcess(args());
    ready = await host.ready();
  });

  after(async () => {
    await host?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('prints ready with the UART link in place, the disk created blank and the DUT off', () => {
    assert.equal(ready.name, 'qdut-t');
    assert.equal(ready.power, 'off');
    assert.equal(ready.mux, 'dut');
    assert.match(ready.device, /^\/dev\/pts\/\d+$/);
    assert.equal(readlinkSync(path.join(dir, 'uart')), ready.device);
    assert.ok(statSync(ready.device).isCharacterDevice());
    assert.equal(statSync(path.join(dir, 'disk.img')).size, 8 * 1024 * 1024);
  });

  it('answers several requests on one connection, in order, and refuses nonsense', async () => {
    const lines = await converse(ready.control, 'power status\nbogus\nmux status\n', 3);
    assert.deepEqual(JSON.parse(lines[0]!), { ok: true, power: 'off', mux: 'dut' });
    const refused = JSON.parse(lines[1]!) as { ok: boolean; code: string };
    assert.equal(refused.ok, false);
    assert.equal(refused.code, 'JIGLET_E_INVALID_ARGUMENT');
    assert.deepEqual(JSON.parse(lines[2]!), { ok: true, power: 'off', mux: 'dut' });
  });

  it('switches the storage mux both ways through the qemu mux driver while off', async () => {
    const mux = qemuStorageMuxDriver.create(
      qemuStorageMuxDriver.configSchema.parse({ driver: 'qemu', socket: ready.control }),
      { dutName: 'qdut-t' },
    );
    await mux.toHost();
    assert.equal(await mux.status(), 'host');
    await host.until('the mux line', () => host.lines.includes('mux host'));
    await mux.toDut();
    assert.equal(await mux.status(), 'dut');
  });

  it('reports a QEMU that refuses to start with its own message, and stays off', async () => {
    const power = qemuPowerDriver.create(
      qemuPowerDriver.configSchema.parse({ driver: 'qemu', socket: ready.control }),
      { dutName: 'qdut-t' },
    );
    await rejectsWithCode(power.on(), 'JIGLET_E_UNAVAILABLE', /exited at start.*(kernel|linux)/is);
    assert.equal(await power.status(), 'off');
  });

  it('says so when its SSH port is taken by another program at power-on', async () => {
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const { port } = holder.address() as AddressInfo;
    const second = new QemuHostProcess([
      // Its own socket, UART link and disk, beside the first qemu-host.
      ...args().map((arg) => {
        for (const file of ['control.sock', 'uart', 'disk.img'])
          if (arg === path.join(dir, file)) return path.join(dir, `2-${file}`);
        return arg;
      }),
      ...['--ssh-port', String(port)],
    ]);
    try {
      const secondReady = await second.ready();
      assert.deepEqual(secondReady.ssh, { host: '127.0.0.1', port });
      const power = qemuPowerDriver.create(
        qemuPowerDriver.configSchema.parse({ driver: 'qemu', socket: secondReady.control }),
        { dutName: 'qdut-t' },
      );
      await rejectsWithCode(
        power.on(),
        'JIGLET_E_UNAVAILABLE',
        new RegExp(`another program holds 127\\.0\\.0\\.1:${port}`),
      );
    } finally {
      holder.close();
      assert.equal((await second.stop()).code, 0, second.stderr);
    }
  });

  it('validates driver configs: an absolute socket path is required', () => {
    const bad = qemuPowerDriver.configSchema.safeParse({ driver: 'qemu', socket: 'relative.sock' });
    assert.equal(bad.success, false);
    const good = qemuPowerDriver.configSchema.parse({ driver: 'qemu', socket: '/run/q.sock' });
    assert.equal(good.offTimeMs, 0);
    assert.ok(good.timeoutMs >= 10_000, 'a QEMU power-off may take seconds');
    assert.equal(qemuStorageMuxDriver.configSchema.safeParse({ driver: 'qemu' }).success, false);
  });

  it('refuses to start a second qemu-host on a live control socket', async () => {
    const second = new QemuHostProcess(args());
    const { code } = await second.exited;
    assert.equal(code, 1);
    assert.match(second.stderr, /served by another process/);
    assert.equal(readlinkSync(path.join(dir, 'uart')), ready.device, 'the first one keeps its link');
  });

  it('exits 0 on SIGTERM and removes its link and socket', async () => {
    const { code, signal } = await host.stop();
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
    assert.equal(existsSync(ready.control), false);
    assert.throws(() => lstatSync(path.join(dir, 'uart')), { code: 'ENOENT' });
  });

  it('exits 64 on a bad invocation', async () => {
    const missing = new QemuHostProcess(['--name', 'x']);
    assert.equal((await missing.exited).code, 64);
    assert.match(missing.stderr, /Missing required arguments?/);
    const badName = new QemuHostProcess(args().map((arg) => (arg === 'qdut-t' ? 'qdut,t' : arg)));
    assert.equal((await badName.exited).code, 64);
    assert.match(badName.stderr, /--name: expected a DUT name/);
    const badPort = new QemuHostProcess([...args(), '--ssh-port', '70000']);
    assert.equal((await badPort.exited).code, 64);
    assert.match(badPort.stderr, /--ssh-port: expected a TCP port/);
  });
});
