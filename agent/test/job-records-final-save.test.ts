/**
 * A job's final record is saved durably off the event loop: saves of one job land in the order
 * they were asked for, a removal waits for them, and a failed save is the caller's to hear of.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type JobRecord, JobRecords } from '../src/jobs/job-records.js';

function finished(id: string, exitCode: number): JobRecord {
  return {
    id,
    owner: 'ci',
    spec: {
      command: 'true',
      args: [],
      env: {},
      cwd: '',
      dut: '',
      limits: { memoryBytes: 0, cpuMillis: 0, pidsMax: 0 },
      timeoutMs: 0,
      stdin: false,
    },
    state: 'exited',
    exitCode,
    oomKilled: false,
    containment: 'none',
    createdAt: 1,
    startedAt: 2,
    endedAt: 3,
  };
}

describe('final job records', () => {
  let dir: string;
  let records: JobRecords;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-final-save-'));
    records = new JobRecords(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lands saves of one job in the order asked, each as the record was when asked', async () => {
    records.createDir('a');
    const record = finished('a', 0);
    const saves: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      record.diskBytes = i;
      saves.push(records.saveFinal(record));
    }
    record.diskBytes = 999; // changed after the last save was asked for: not saved
    await Promise.all(saves);
    assert.equal(records.load('a').diskBytes, 20);
    assert.deepEqual(readdirSync(records.dirOf('a')), ['job.json'], 'no temporary file left');
  });

  it('refuses a synchronous save behind a final one, which would land out of order', async () => {
    records.createDir('b');
    const saving = records.saveFinal(finished('b', 0));
    assert.throws(() => records.save(finished('b', 1)), /final save under way/);
    await saving;
    records.save(finished('b', 2)); // nothing under way any more
    assert.equal(records.load('b').exitCode, 2);
  });

  it('removes a job only after its save landed, so nothing comes back', async () => {
    records.createDir('c');
    const saving = records.saveFinal(finished('c', 0));
    await records.remove('c');
    await saving;
    assert.equal(existsSync(records.dirOf('c')), false);
  });

  it('gives a failed save to its caller, and flush() does not wait for it forever', async () => {
    // No folder for the job: the temporary file cannot be created.
    await assert.rejects(records.saveFinal(finished('gone', 0)), { code: 'ENOENT' });
    await records.flush();
    records.createDir('d');
    const saving = records.saveFinal(finished('d', 7));
    await records.flush();
    await saving;
    assert.equal(JSON.parse(readFileSync(join(records.dirOf('d'), 'job.json'), 'utf8')).exitCode, 7);
  });
});
