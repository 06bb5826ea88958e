/**
 * The jig the HIL suites run against. With JIGLET_ADDR set, a real jiglet (certificates from
 * JIGLET_CA / JIGLET_CERT / JIGLET_KEY, the DUT from JIGLET_DUT); otherwise the built-in virtual
 * jig, started here exactly as a user starts it: `jiglet serve --config fixtures/jigs/virtual.yaml`.
 * The suites themselves only use the client library.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionSettings } from '../../client/src/connection.js';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { type BuiltinJig, builtinJig } from '../../fixtures/test-support/builtin-jig.js';
import { startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { testPki } from '../../fixtures/test-support/test-pki.js';

/** What a suite needs to know about the DUT it drives. */
export interface HilTarget {
  /** An engineer allowed to switch power and type on the console. */
  operator: JigletClient;
  /** More readers (on their own connections). */
  viewers: JigletClient[];
  /** The DUT to drive. */
  dut: string;
  /** A DUT whose USB-serial adapter vanishes while unpowered (may equal `dut` on real jigs). */
  vanishingDut: string;
  /** Whether `vanishingDut`'s port is known to vanish (true on the virtual jig). */
  portVanishes: boolean;
  login: { user: string; password: string; loginPrompt: string; passwordPrompt: string; shellPrompt: string };
  /** A banner every boot prints once (to count boots). */
  bootBanner: string;
  /** A command and a pattern its output matches. */
  command: { text: string; expect: string };
  /** Power cycles for the cycle suite. */
  cycles: number;
  /** The OS release suite: a DUT with a storage mux and the images to flash onto it. */
  release: {
    dut: string;
    /** A good image of `version`, and one that must fail to boot. */
    goodImage: () => Promise<string>;
    badImage: () => Promise<string>;
    version: string;
    /** What a boot of a good image prints, and what a failed boot prints. */
    bootedPattern: string;
    failedBootPattern: string;
    versionCommand: string;
  };
  stop(): Promise<void>;
}

const env = process.env;

/** What every target shares, from the environment or the built-in jigs' defaults. */
function defaults() {
  return {
    login: {
      user: env.JIGLET_DUT_USER ?? 'root',
      password: env.JIGLET_DUT_PASSWORD ?? 'secret',
      loginPrompt: env.JIGLET_LOGIN_PROMPT ?? 'login: $',
      passwordPrompt: env.JIGLET_PASSWORD_PROMPT ?? 'Password: $',
      shellPrompt: env.JIGLET_SHELL_PROMPT ?? '[#$] $',
    },
    bootBanner: env.JIGLET_BOOT_BANNER ?? 'U-Boot ',
    command: { text: env.JIGLET_COMMAND ?? 'uname -a', expect: env.JIGLET_COMMAND_EXPECT ?? '^Linux ' },
    cycles: Number(env.JIGLET_CYCLES ?? 3),
  };
}

/** Opens the target named by the environment, or brings up the virtual jig. */
export async function openHilTarget(): Promise<HilTarget> {
  const common = defaults();
  const releaseFromEnv = (dut: string): HilTarget['release'] => ({
    dut: env.JIGLET_FLASH_DUT ?? dut,
    goodImage: async () => required('JIGLET_IMAGE'),
    badImage: async () => required('JIGLET_BAD_IMAGE'),
    version: required('JIGLET_IMAGE_VERSION'),
    bootedPattern: env.JIGLET_BOOTED_PATTERN ?? 'login: $',
    failedBootPattern: env.JIGLET_FAILED_BOOT_PATTERN ?? 'Kernel panic|VFS: Unable to mount root',
    versionCommand: env.JIGLET_VERSION_COMMAND ?? 'cat /etc/os-release',
  });
  if (env.JIGLET_ADDR) {
    const settings: ConnectionSettings = {
      server: env.JIGLET_ADDR,
      ca: required('JIGLET_CA'),
      cert: required('JIGLET_CERT'),
      key: required('JIGLET_KEY'),
    };
    const dut = required('JIGLET_DUT');
    const operator = new JigletClient(settings);
    const viewers = [new JigletClient(settings), new JigletClient(settings)];
    return {
      ...common,
      release: releaseFromEnv(dut),
      operator,
      viewers,
      dut,
      vanishingDut: env.JIGLET_VANISHING_DUT ?? dut,
      portVanishes: env.JIGLET_VANISHING_DUT !== undefined,
      async stop() {
        for (const c of [operator, ...viewers]) c.close();
      },
    };
  }
  return startBuiltinJig('virtual.yaml', 'vdut-a');
}

/** Starts `jiglet serve --config fixtures/jigs/<file>` as a user would, on a free port. */
async function startBuiltinJig(file: BuiltinJig, dut: string): Promise<HilTarget> {
  const common = defaults();
  const pki = await testPki();
  const stateDir = mkdtempSync(join(tmpdir(), 'jiglet-hil-'));
  const agent = await startJigletProcess({
    stateDir,
    tlsDir: pki.jigDir,
    // Its DUTs' files follow the state directory and their endpoints take free ports: other runs
    // share this machine. (The QEMU jig's kernel build and downloads stay shared caches.)
    config: builtinJig(file),
  });
  const operator = new JigletClient(pki.as('operator', agent.address));
  // Images for the release suite, built by the fixture the virtual and QEMU DUTs boot from.
  const images = mkdtempSync(join(tmpdir(), 'jiglet-hil-images-'));
  const build = (name: string, corrupt: boolean) => async () =>
    (await buildImage({ out: join(images, name), version: '1.2.3', sizeBytes: 16 * 1024 * 1024, corrupt }))
      .path;
  const viewers = [
    new JigletClient(pki.as('viewer', agent.address)),
    new JigletClient(pki.as('admin', agent.address)),
  ];
  // A fresh virtual jig's cards are blank: the suites expect a DUT that boots, as a lab's does.
  if (file === 'virtual.yaml') await operator.flash(dut, await build('good.img', false)());
  return {
    ...common,
    operator,
    viewers,
    dut,
    vanishingDut: 'vdut-b',
    portVanishes: true,
    release: {
      dut,
      goodImage: build('good.img', false),
      badImage: build('bad.img', true),
      version: '1.2.3',
      bootedPattern: 'login: $',
      failedBootPattern: 'Kernel panic',
      // The virtual DUT's shell is a real sh on the host: its system's files live under $VROOT.
      versionCommand: file === 'virtual.yaml' ? 'cat $VROOT/etc/os-release' : 'cat /etc/os-release',
    },
    async stop() {
      for (const c of [operator, ...viewers]) c.close();
      await agent.stop();
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(images, { recursive: true, force: true });
    },
  };
}

/**
 * The built-in QEMU jig (`fixtures/jigs/qemu.yaml`): a real Debian kernel booting the flashed
 * disk under TCG. Only the release suite runs on it; the first start downloads the kernel package.
 */
export async function openQemuTarget(): Promise<HilTarget> {
  const base = await startBuiltinJig('qemu.yaml', 'qdut-1');
  return {
    ...base,
    release: { ...base.release, dut: 'qdut-1', failedBootPattern: 'Kernel panic|VFS: Unable to mount root' },
  };
}

function required(name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is required when JIGLET_ADDR names a real jiglet`);
  return value;
}
