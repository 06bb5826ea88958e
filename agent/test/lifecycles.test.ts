/**
 * Job and lease lifecycles are explicit state machines whose transitions are compare-and-set:
 * of two racing finishers only the first wins, and an illegal transition is a typed error.
 */
import assert from 'node:assert/strict';
import { JigletError } from '../../protocol/src/errors.js';
import { compareAndSet, isFinal, type JobStateName } from '../src/jobs/job-state.js';
import { assertLeaseTransition, LeaseStates } from '../src/leases/lease-state.js';

function illegal(err: unknown): boolean {
  return err instanceof JigletError && err.code === 'JIGLET_E_ILLEGAL_TRANSITION';
}

describe('job lifecycle (job-state.ts)', () => {
  it('moves a job only from the state the caller expects', () => {
    const job = { id: 'j1', state: 'pending' as JobStateName };
    compareAndSet(job, 'pending', 'running');
    assert.equal(job.state, 'running');
    compareAndSet(job, 'running', 'exited');
    assert.equal(job.state, 'exited');
    assert.ok(isFinal(job.state));
    // A stop that lost the race to the exit: refused, and the state stays as the winner left it.
    assert.throws(() => compareAndSet(job, 'running', 'stopped'), illegal);
    assert.equal(job.state, 'exited');
  });

  it('refuses transitions the lifecycle does not have, even from the expected state', () => {
    const job = { id: 'j2', state: 'failed' as JobStateName };
    assert.throws(
      () => compareAndSet(job, 'failed', 'running'),
      /job j2 is failed; it cannot become running/,
    );
    const pending = { id: 'j3', state: 'pending' as JobStateName };
    assert.throws(() => compareAndSet(pending, 'pending', 'exited'), illegal);
    assert.equal(pending.state, 'pending');
  });
});

describe('lease lifecycle (lease-state.ts)', () => {
  it('ends a held lease once: the first end wins and is remembered', () => {
    const states = new LeaseStates();
    states.held('l1');
    assert.equal(states.stateOf('l1'), 'held');
    assert.equal(states.compareAndSet('l1', 'held', 'released'), true);
    // The expiry timer firing after the release: no second end.
    assert.equal(states.compareAndSet('l1', 'held', 'expired'), false);
    assert.equal(states.stateOf('l1'), 'released');
    assert.equal(states.endOf('l1'), 'released');
  });

  it('does not end a lease it never granted', () => {
    const states = new LeaseStates();
    assert.equal(states.compareAndSet('never', 'held', 'revoked'), false);
    assert.equal(states.stateOf('never'), undefined);
  });

  it('refuses an end that is not a transition, as a typed error', () => {
    assert.throws(() => assertLeaseTransition('l2', 'expired', 'released'), illegal);
    assert.throws(() => new LeaseStates().compareAndSet('l3', 'revoked', 'released'), illegal);
  });

  it('remembers a bounded number of ended leases', () => {
    const states = new LeaseStates();
    for (let i = 0; i < 1500; i++) {
      states.held(`l${i}`);
      states.compareAndSet(`l${i}`, 'held', 'expired');
    }
    assert.equal(states.endOf('l0'), undefined);
    assert.equal(states.endOf('l1499'), 'expired');
  });
});
