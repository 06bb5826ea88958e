/**
 * An image still arriving (arriving-image.ts): a file that stops growing ends the read with a
 * clear reason instead of hanging the flash, and an abort stops the wait. (Reading a growing
 * image end to end onto a loop device is in flash-dut.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JigletError } from '../../../protocol/src/errors.js';
import { readArrivingImage, waitForArrivingBytes } from '../../src/flash/arriving-image.js';

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream);
}

describe('an image that is still arriving', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'jiglet-arriving-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('says the upload was interrupted when the file stops growing, and how far it got', async () => {
    const file = path.join(dir, 'stalled');
    writeFileSync(file, Buffer.alloc(1000, 1));
    const reader = readArrivingImage(file, { size: 5000, sha256: '0'.repeat(64) }, { stallMs: 300 });
    const stalled = (err: unknown): boolean => {
      assert.ok(err instanceof JigletError);
      assert.equal(err.code, 'JIGLET_E_UNAVAILABLE');
      assert.match(err.message, /stopped arriving at 1000 of 5000 bytes.*upload it again/);
      return true;
    };
    await assert.rejects(drain(reader.stream), stalled);
    await assert.rejects(reader.checked, stalled);
  });

  it('stops waiting for more bytes when aborted', async () => {
    const file = path.join(dir, 'aborted');
    writeFileSync(file, Buffer.alloc(10));
    const controller = new AbortController();
    const waiting = waitForArrivingBytes(file, 4096, { signal: controller.signal });
    controller.abort(new Error('flash stopped'));
    await assert.rejects(waiting, /flash stopped/);
  });
});
