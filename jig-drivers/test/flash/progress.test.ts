import assert from 'node:assert/strict';
import {
  driverEventLine,
  type FlashProgress,
  parseProgressLine,
} from '../../../protocol/src/driver-events.js';
import { ProgressTracker } from '../../src/flash/progress.js';

const progressLine = (progress: FlashProgress): string => driverEventLine({ kind: 'flash', progress });

/** A tracker on a clock the test moves by hand. */
function tracked(): { tracker: ProgressTracker; reports: FlashProgress[]; advance: (ms: number) => void } {
  let now = 1000;
  const reports: FlashProgress[] = [];
  const tracker = new ProgressTracker(
    (report) => reports.push(report),
    () => now,
  );
  return { tracker, reports, advance: (ms) => (now += ms) };
}

describe('flash progress', () => {
  it('reports every phase change at once and updates at most every 250 ms', () => {
    const { tracker, reports, advance } = tracked();
    tracker.phase('host');
    tracker.phase('write', { bytesRead: 0, bytesWritten: 0, totalBytes: 100e6, totalExact: true });
    for (let i = 1; i <= 10; i++) {
      advance(100);
      tracker.update({ bytesRead: i * 5e6, bytesWritten: i * 4e6 });
    }
    // 1 s of updates every 100 ms: reports at 300, 600 and 900 ms (each ≥ 250 ms after the last).
    assert.deepEqual(
      reports.map((r) => [r.phase, r.bytesRead]),
      [
        ['host', 0],
        ['write', 0],
        ['write', 15e6],
        ['write', 30e6],
        ['write', 45e6],
      ],
    );
    assert.deepEqual(reports.at(-1), {
      phase: 'write',
      bytesWritten: 36e6,
      bytesRead: 45e6,
      totalBytes: 100e6,
      mbPerS: 50,
      etaS: 2, // 55 MB left at 50 MB/s, rounded up
    });
  });

  it('counts verify progress against the bytes written, and ends with done', () => {
    const { tracker, reports, advance } = tracked();
    tracker.phase('write', { bytesRead: 0, bytesWritten: 0, totalBytes: 8e6, totalExact: true });
    advance(1000);
    tracker.update({ bytesRead: 8e6, bytesWritten: 6e6 });
    tracker.phase('verify', { bytesRead: 0, totalBytes: 6e6 });
    advance(500);
    tracker.update({ bytesRead: 3e6 });
    tracker.phase('done', { bytesRead: 8e6, bytesWritten: 6e6, totalBytes: 8e6 });
    assert.deepEqual(reports.slice(-3), [
      { phase: 'verify', bytesWritten: 6e6, bytesRead: 0, totalBytes: 6e6, mbPerS: 0, etaS: null },
      { phase: 'verify', bytesWritten: 6e6, bytesRead: 3e6, totalBytes: 6e6, mbPerS: 6, etaS: 1 },
      { phase: 'done', bytesWritten: 6e6, bytesRead: 8e6, totalBytes: 8e6, mbPerS: 0, etaS: 0 },
    ]);
  });

  it('drops an estimated total (gzip ISIZE) once more than that was read', () => {
    const { tracker, reports, advance } = tracked();
    tracker.phase('write', { bytesRead: 0, totalBytes: 10e6, totalExact: false });
    advance(300);
    tracker.update({ bytesRead: 9e6 });
    advance(300);
    tracker.update({ bytesRead: 11e6 });
    assert.deepEqual(
      reports.map((r) => [r.totalBytes, r.etaS]),
      [
        [10e6, null],
        [10e6, 1],
        [null, null],
      ],
    );
  });

  it('prints one JSON line per report', () => {
    const line = progressLine({
      phase: 'sync',
      bytesWritten: 1,
      bytesRead: 2,
      totalBytes: null,
      mbPerS: 0,
      etaS: null,
    });
    assert.equal(
      line,
      '{"flash":{"phase":"sync","bytesWritten":1,"bytesRead":2,"totalBytes":null,"mbPerS":0,"etaS":null}}\n',
    );
  });

  it('reads back what it writes, and nothing else', () => {
    const report: FlashProgress = {
      phase: 'write',
      bytesWritten: 4096,
      bytesRead: 8192,
      totalBytes: 65536,
      mbPerS: 12.5,
      etaS: 3,
    };
    assert.deepEqual(parseProgressLine(progressLine(report).trimEnd()), report);
    assert.equal(parseProgressLine('jig-driver flash: writing /dev/sdb'), undefined);
    assert.equal(parseProgressLine(progressLine(report).slice(0, 30)), undefined, 'a torn line');
    assert.deepEqual(parseProgressLine('{"flash":{"phase":"sync","bytesRead":-1,"mbPerS":"fast"}}'), {
      phase: 'sync',
      bytesWritten: 0,
      bytesRead: 0,
      totalBytes: null,
      mbPerS: 0,
      etaS: null,
    });
  });
});
