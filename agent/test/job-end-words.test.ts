/** What a failed power action or health check says about how its job ended. */
import assert from 'node:assert/strict';
import { howJobEnded } from '../src/jobs/job-end-words.js';
import type { JobRecord } from '../src/jobs/job-records.js';

const ended = (fields: Partial<JobRecord>): JobRecord => ({
  ...({} as JobRecord),
  state: 'stopped',
  ...fields,
});

describe('how a job ended, in words', () => {
  it('says why a stopped job stopped, not the signal that stopped it', () => {
    const job = ended({ stopReason: 'lease', signal: 'SIGTERM' });
    assert.equal(howJobEnded(job, 'timed out after 30 s'), 'was stopped when its lease ended');
    assert.equal(
      howJobEnded(ended({ stopReason: 'request', signal: 'SIGTERM' }), ''),
      'was stopped by request',
    );
    assert.equal(
      howJobEnded(ended({ stopReason: 'timeout' }), 'timed out after 30 s'),
      'timed out after 30 s',
    );
  });

  it('names the signal of a job killed from outside, the code of one that exited, and a failed start', () => {
    assert.equal(howJobEnded(ended({ state: 'exited', signal: 'SIGKILL' }), ''), 'was killed by SIGKILL');
    assert.equal(howJobEnded(ended({ state: 'exited', exitCode: 3 }), ''), 'exited with code 3');
    assert.equal(
      howJobEnded(ended({ state: 'failed', error: 'command not found: relay' }), ''),
      'could not start: command not found: relay',
    );
    assert.equal(howJobEnded(ended({ state: 'lost' }), ''), 'was lost (the agent stopped while it ran)');
  });
});
