/**
 * A live serial capture runs as long as the agent, so its log is bounded in place
 * (retention.serialLogMaxBytes): a DUT that floods its console for hours leaves the newest part
 * of its log on disk, and tail, follow and expect keep working on what is kept.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { SerialRecord } from '../../client/src/jig-client.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';

const MIB = 1024 * 1024;
const BOUND = MIB;
/** One capture record more than the bound: the trim runs after the record that passed it. */
const SLACK = 256 * 1024;

describe('serial log bound', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  before(async () => {
    v = await startVirtualJig([{ name: 'vdut-a' }], { retention: { serialLogMaxBytes: BOUND } });
  });
  after(async () => {
    await v?.stop();
  });

  it('keeps the newest part of a flooded console, frees the rest on disk, and serves what it keeps', async () => {
    const op = v.t.client('operator');
    const on = await op.jig.power('vdut-a', 'on');
    await op.jig.expect('vdut-a', 'login: $', { offset: on.serialOffset, timeoutMs: 20_000 });
    const runtime = v.t.agent.jig.get('vdut-a');
    const capture = runtime.capture!;
    // In batches of half a MiB, each waited for: the virtual UART, like a real one, drops what
    // its reader has not taken once its 1 MiB buffer is full.
    const line = Buffer.from(`${'x'.repeat(1022)}\r\n`);
    let from = on.serialOffset;
    for (let batch = 0; batch < 6; batch++) {
      for (let i = 0; i < 512; i++) v.dut('vdut-a').inject(line);
      v.dut('vdut-a').inject(Buffer.from(`BATCH-${batch}\r\n`));
      from = (await op.jig.expect('vdut-a', `BATCH-${batch}`, { offset: from, timeoutMs: 30_000 }))
        .nextOffset;
    }
    v.dut('vdut-a').inject(Buffer.from('END-OF-FLOOD\r\n'));
    const end = await op.jig.expect('vdut-a', 'END-OF-FLOOD', { offset: from, timeoutMs: 30_000 });

    await waitUntil(
      'the capture log to be trimmed back under its bound',
      () => capture.log.storedBytes <= BOUND,
      10_000,
    );
    assert.ok(capture.log.start > 0, 'the oldest part was dropped');
    assert.ok(capture.log.length > 2 * BOUND, 'offsets keep counting from the capture start');
    const file = statSync(join(capture.log.dir, 'output.log'));
    assert.ok(file.blocks * 512 <= BOUND + SLACK, `the log takes ${file.blocks * 512} bytes on disk`);

    // A tail of the whole log starts at the oldest byte kept, says what was dropped, and ends
    // with the newest output.
    const records: SerialRecord[] = [];
    for await (const r of v.t.client('viewer').jig.serial('vdut-a', { offset: 0 })) records.push(r);
    const first = records[0]!;
    assert.equal(first.type, 'event');
    assert.equal(first.type === 'event' && first.event, 'trimmed');
    assert.equal(first.nextOffset, capture.log.start);
    assert.match(first.type === 'event' ? first.detail : '', /older serial output were dropped/);
    const text = records.map((r) => (r.type === 'chunk' ? r.data.toString('latin1') : '')).join('');
    assert.ok(text.length <= BOUND + SLACK, `tail returned ${text.length} bytes`);
    assert.match(text, /END-OF-FLOOD\r\n$/);

    // expect from an offset that was dropped searches what is kept; from the end it finds new output.
    const again = await op.jig.expect('vdut-a', 'END-OF-FLOOD', { offset: 0, timeoutMs: 10_000 });
    assert.equal(again.lineOffset, end.lineOffset);
    v.dut('vdut-a').inject(Buffer.from('after the trim\r\n'));
    await op.jig.expect('vdut-a', 'after the trim', { offset: end.nextOffset, timeoutMs: 10_000 });

    // Retention counts what the log holds, not how far its offsets reached.
    v.t.agent.supervisor.refreshLiveBytes();
    const entry = v.t.agent.supervisor.index.get(capture.jobId);
    assert.ok(
      entry && entry.bytes <= BOUND + SLACK,
      `the index counts ${entry?.bytes} bytes for the capture`,
    );
  });
});
