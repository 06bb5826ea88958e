/**
 * The OS suite a lab runs on every release, against the client library only: flash the release
 * → it boots → log in → it is the right version → flash a broken image → the boot fails visibly
 * → reflash the release → recovered. On the virtual jig in `npm test`; on a real jiglet with
 * JIGLET_ADDR, JIGLET_FLASH_DUT, JIGLET_IMAGE, JIGLET_BAD_IMAGE and JIGLET_IMAGE_VERSION.
 */
import assert from 'node:assert/strict';
import { STEP_TIMEOUT_MS } from './support/login.js';
import { type HilTarget, openHilTarget, openQemuTarget } from './support/target.js';

// A real agent (JIGLET_ADDR) is one target; in `npm test` the suite runs on both built-in jigs.
const targets: [string, () => Promise<HilTarget>][] = process.env.JIGLET_ADDR
  ? [['the DUT named by JIGLET_FLASH_DUT', openHilTarget]]
  : [
      ['the virtual DUT', openHilTarget],
      ['the QEMU DUT (a real kernel under TCG)', openQemuTarget],
    ];

for (const [name, open] of targets) {
  describe(`HIL: an OS release on ${name}`, function () {
    this.timeout(20 * STEP_TIMEOUT_MS);
    let target: HilTarget;
    before(async function () {
      // The QEMU jig's first start downloads Debian's kernel package.
      this.timeout(15 * 60_000);
      target = await open();
    });
    after(async () => {
      await target?.stop();
    });

    /** Flashes, powers on, and resolves with the serial offset of the power-on. */
    const flashAndBoot = async (image: string): Promise<number> => {
      const { operator } = target;
      const dut = target.release.dut;
      const flashed = await operator.flash(dut, image);
      assert.ok(flashed.last === undefined || flashed.last.phase === 'done', JSON.stringify(flashed.last));
      const listed = (await operator.jig.duts()).find((d) => d.name === dut);
      assert.equal(listed?.storage?.dirty, false);
      return (await operator.jig.power(dut, 'on')).serialOffset;
    };

    it('boots the release, fails visibly on a broken image, and recovers with a reflash', async () => {
      const { jig } = target.operator;
      const { release } = target;
      const good = await release.goodImage();
      const session = { dut: release.dut };

      // 1. The release boots and reports its version.
      await flashAndBoot(good);
      const version = await jig.exec(session.dut, release.versionCommand, { timeoutMs: STEP_TIMEOUT_MS });
      assert.equal(version.exitCode, 0);
      assert.match(
        version.stdout.toString(),
        new RegExp(`^VERSION_ID="?${release.version.replace(/\./g, '\\.')}"?$`, 'm'),
      );

      // 2. A broken image: the boot fails where everyone can see it, and no login prompt comes.
      const broken = await flashAndBoot(await release.badImage());
      const failed = await jig.expect(session.dut, release.failedBootPattern, {
        offset: broken,
        timeoutMs: STEP_TIMEOUT_MS,
      });
      assert.match(failed.line, new RegExp(release.failedBootPattern));
      await assert.rejects(
        jig.expect(session.dut, release.bootedPattern, { offset: broken, timeoutMs: 3000 }),
        /no line matched/,
      );

      // 3. Reflash the release (a cache hit: nothing is uploaded again) and it is back.
      const again = await target.operator.flash(session.dut, good);
      assert.equal(again.uploaded, 0);
      const on = await jig.power(session.dut, 'on');
      await jig.expect(session.dut, release.bootedPattern, {
        offset: on.serialOffset,
        timeoutMs: STEP_TIMEOUT_MS,
      });
    });
  });
}
