/**
 * Flashing when things go wrong: a medium that never appears, a DUT without storage, and an
 * agent stopped mid-flash — the DUT stays marked dirty across the restart until a flash completes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlashFailedError } from '../../client/src/flash-client.js';
import { buildImage } from '../../fixtures/images/build-image.js';
import { errorOf } from '../../fixtures/test-support/call-errors.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { parseJigDescription } from '../../jig-drivers/src/jig-description.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

describe('flashing under bad conditions', function () {
  this.timeout(60_000);
  let dir: string;
  let image: string;
  let t: TestAgent | undefined;
  const jig = () =>
    parseJigDescription(
      JSON.stringify({
        duts: [
          {
            name: 'ghost-card',
            storage: {
              mux: { driver: 'command', host: 'true', dut: 'true' },
              device: { path: join(dir, 'never-appears') },
              appearTimeoutMs: 300,
            },
          },
          {
            // The mux never finishes switching: the flash job hangs until it is stopped.
            name: 'stuck-mux',
            storage: {
              mux: { driver: 'command', host: 'sleep 600', dut: 'true', timeoutMs: 600_000 },
              device: { path: join(dir, 'card') },
            },
          },
          { name: 'no-storage' },
        ],
      }),
      'flash-lab.yaml',
    );
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-flashbad-'));
    image = (await buildImage({ out: join(dir, 'os.img'), version: '1.0.0', sizeBytes: 4 * 1024 * 1024 }))
      .path;
  });
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fails a flash whose medium never appears, naming the device and the wait', async () => {
    t = await startTestAgent({ jig: jig() });
    const err = await errorOf(t.client('operator').flash('ghost-card', image));
    assert.ok(err instanceof FlashFailedError, String(err));
    assert.match(err.message, /waiting for .*never-appears to appear: no answer within 300 ms/);
    // The flasher's own code, read from its `failed` line, and the job, as data.
    assert.equal(err.driverCode, 'JIGLET_E_DEADLINE_EXCEEDED');
    assert.match(err.message, new RegExp(`\\(job ${err.jobId}\\)$`));
    const noStorage = await errorOf(t.client('operator').flash('no-storage', image));
    assert.equal(noStorage.code, 'JIGLET_E_FAILED_PRECONDITION');
    assert.match(noStorage.message, /no-storage has no storage mux/);
  });

  it('keeps a DUT dirty across an agent restart when a flash was interrupted', async () => {
    const stateDir = join(dir, 'state');
    t = await startTestAgent({ jig: jig(), stateDir });
    const op = t.client('operator');
    const uploaded = await op.images.upload(image);
    const started = await op.jig.flash('stuck-mux', { imageSha256: uploaded.sha256, verify: true });
    assert.equal((await op.get(started.jobId)).state, JobState.JOB_STATE_RUNNING);
    assert.equal((await op.jig.duts()).find((d) => d.name === 'stuck-mux')?.storage?.busy, true);
    await t.stop(); // stops the flash job mid-way, as a crash would leave it
    t = await startTestAgent({ jig: jig(), stateDir });
    const after = (await t.client('viewer').jig.duts()).find((d) => d.name === 'stuck-mux');
    assert.equal(after?.storage?.dirty, true);
    assert.equal(after?.storage?.lastJobId, started.jobId);
    assert.equal(after?.storage?.busy, false);
  });
});
