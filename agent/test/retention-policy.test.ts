/**
 * The retention rules (issue 11), one at a time: age per owner class, agent-owned jobs first
 * under pressure, held leases pin their jobs, recently ended leases keep theirs like a user's.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../src/config.js';
import { AGENT_OWNER } from '../src/jig/job-keeper.js';
import type { JobIndexEntry } from '../src/jobs/job-index.js';
import type { JobStateName } from '../src/jobs/job-state.js';
import {
  DEFAULT_RETENTION,
  type LeaseSpan,
  planPrune,
  type RetentionPolicy,
} from '../src/jobs/retention-policy.js';

const DAY = 24 * 3600 * 1000;
const NOW = Date.UTC(2026, 0, 31);

function job(
  id: string,
  owner: string,
  endedDaysAgo: number,
  more: Partial<JobIndexEntry> = {},
): JobIndexEntry {
  const endedAt = NOW - endedDaysAgo * DAY;
  return {
    id,
    owner,
    state: 'exited' as JobStateName,
    dut: '',
    createdAt: endedAt - 1000,
    endedAt,
    bytes: 1000,
    measured: true,
    ...more,
  };
}

const pruned = (
  entries: JobIndexEntry[],
  policy: RetentionPolicy = DEFAULT_RETENTION,
  spans: LeaseSpan[] = [],
) => planPrune(entries, spans, policy, NOW).prune.map((p) => `${p.entry.id}:${p.reason}`);

describe('retention policy', () => {
  it('keeps users’ jobs 14 days and agent-owned jobs 2 days by default, and never a live job', () => {
    const entries = [
      job('user-old', 'alice', 15),
      job('user-young', 'alice', 13),
      job('agent-old', AGENT_OWNER, 3),
      job('agent-young', AGENT_OWNER, 1),
      job('running', 'alice', 400, { state: 'running', endedAt: undefined }),
    ];
    assert.deepEqual(pruned(entries), ['user-old:age', 'agent-old:age']);
  });

  it('over the count or size bound, prunes agent-owned jobs first, oldest first, then users’', () => {
    const entries = [
      job('u1', 'alice', 5),
      job('a1', AGENT_OWNER, 1.5),
      job('u2', 'bob', 4),
      job('a2', AGENT_OWNER, 0.5),
      job('u3', 'bob', 0.1),
    ];
    assert.deepEqual(pruned(entries, { ...DEFAULT_RETENTION, maxJobs: 2 }), [
      'a1:count',
      'a2:count',
      'u1:count',
    ]);
    assert.deepEqual(pruned(entries, { ...DEFAULT_RETENTION, maxBytes: 3500 }), ['a1:bytes', 'a2:bytes']);
  });

  it('pins jobs that ran under a lease still held, whatever the bounds; only on that DUT and span', () => {
    const entries = [
      job('under-lease', AGENT_OWNER, 30, { dut: 'rpi4-a' }),
      job('before-lease', AGENT_OWNER, 40, { dut: 'rpi4-a' }),
      job('other-dut', AGENT_OWNER, 30, { dut: 'rpi4-b' }),
    ];
    const plan = planPrune(
      entries,
      [{ dut: 'rpi4-a', from: NOW - 35 * DAY }],
      { ...DEFAULT_RETENTION, maxJobs: 0 },
      NOW,
    );
    assert.deepEqual(
      plan.prune.map((p) => p.entry.id),
      ['before-lease', 'other-dut'],
    );
    assert.equal(plan.pinned, 1);
  });

  it('keeps the jobs of a lease that ended as long as a user’s, counted from the lease’s end', () => {
    const entries = [job('power-in-lease', AGENT_OWNER, 10, { dut: 'rpi4-a' })];
    const ended = (daysAgo: number): LeaseSpan[] => [
      { dut: 'rpi4-a', from: NOW - 11 * DAY, to: NOW - daysAgo * DAY },
    ];
    assert.deepEqual(pruned(entries, DEFAULT_RETENTION, ended(9)), []);
    assert.deepEqual(pruned(entries, DEFAULT_RETENTION, ended(15)), ['power-in-lease:age']);
    // Under pressure it goes after agent jobs outside leases, like a user's job.
    const more = [...entries, job('power-free', AGENT_OWNER, 0.5)];
    assert.deepEqual(pruned(more, { ...DEFAULT_RETENTION, maxJobs: 1 }, ended(9)), ['power-free:count']);
  });

  it('reads the retention section of the config file over the defaults, and names a bad key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jiglet-retention-config-'));
    try {
      const file = join(dir, 'jig.yaml');
      writeFileSync(
        file,
        'retention:\n  userJobDays: 30\n  maxJobs: 1000\n  pruneIntervalMinutes: 5\n  serialLogMaxBytes: 1048576\n  journalMaxBytes: 131072\n',
      );
      const { retention } = await loadAgentConfig({ config: file });
      assert.deepEqual(retention, {
        ...DEFAULT_RETENTION,
        userJobMaxAgeMs: 30 * DAY,
        maxJobs: 1000,
        intervalMs: 5 * 60_000,
        serialLogMaxBytes: 1024 * 1024,
        journalMaxBytes: 128 * 1024,
      });
      assert.deepEqual((await loadAgentConfig({})).retention, DEFAULT_RETENTION);
      writeFileSync(file, 'retention:\n  maxBytes: 1000\n  keepForever: true\n  serialLogMaxBytes: 4096\n');
      await assert.rejects(
        () => loadAgentConfig({ config: file }),
        (err: Error) =>
          /retention\.maxBytes: expected at least 64 MiB/.test(err.message) &&
          /retention\.serialLogMaxBytes: expected at least 256 KiB/.test(err.message) &&
          /keepForever/.test(err.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
