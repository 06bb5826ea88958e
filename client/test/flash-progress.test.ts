/**
 * jigctl flash's progress lines in a CI log (no terminal) when the upload runs beside the flash
 * job, as on every first flash: the job's phases follow one another, and the upload is not cut
 * short by them; its line comes once it is complete.
 */
import assert from 'node:assert/strict';
import { FlashProgressView } from '../src/cli/flash-progress.js';
import type { FlashProgress } from '../src/flash-client.js';

const MiB = 1024 * 1024;

function flash(
  phase: FlashProgress['phase'],
  bytesRead = 0,
  totalBytes: number | null = null,
): FlashProgress {
  return { phase, bytesRead, totalBytes, bytesWritten: bytesRead, mbPerS: 0, etaS: null };
}

describe('jigctl flash progress without a terminal', () => {
  it('keeps the upload going beside the flash job and gives it its own line when it completes', () => {
    const lines: string[] = [];
    const out = { write: (text: string) => lines.push(text) } as unknown as NodeJS.WriteStream;
    const view = new FlashProgressView(out, false);
    view.onEvent({ type: 'transfer', progress: { phase: 'hash', done: 8 * MiB, total: 8 * MiB } });
    view.onEvent({ type: 'transfer', progress: { phase: 'upload', done: 2 * MiB, total: 8 * MiB } });
    view.onEvent({ type: 'flash', progress: flash('host') });
    view.onEvent({ type: 'transfer', progress: { phase: 'upload', done: 4 * MiB, total: 8 * MiB } });
    view.onEvent({ type: 'flash', progress: flash('write', 10 * MiB) });
    view.onEvent({ type: 'transfer', progress: { phase: 'upload', done: 8 * MiB, total: 8 * MiB } });
    view.onEvent({ type: 'flash', progress: flash('write', 32 * MiB) });
    view.onEvent({ type: 'flash', progress: flash('sync') });
    view.onEvent({ type: 'flash', progress: flash('done', 32 * MiB, 32 * MiB) });
    view.finish();
    const names = lines.map((l) => /^jigctl: (\S+(?: \S+)*?)\s{2}/.exec(l)?.[1]);
    assert.deepEqual(names, ['hash', 'medium to host', 'upload', 'write', 'sync', 'done'], lines.join(''));
    assert.match(lines[2]!, /upload\s+8\.0 MiB in .*, beside the flash\n$/);
    assert.match(lines[3]!, /write\s+32\.0 MiB in /);
    assert.match(lines.at(-1)!, /done\s+32\.0 MiB image in /);
  });
});
