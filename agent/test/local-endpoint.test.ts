/**
 * The local endpoint (README, "The local endpoint"): a job's own processes call the agent on
 * `$JIGLET_ADDR` (a unix socket) with `jigctl` from their PATH and no certificate, acting as the
 * job's owner on the job's DUT under the job's lease — and nothing else. One virtual jig for all.
 */
import assert from 'node:assert/strict';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startVirtualJig, type VirtualJig } from '../../fixtures/test-support/virtual-jig.js';
import { JigletError } from '../../protocol/src/errors.js';
import { METHOD_PERMISSIONS } from '../src/auth/permissions.js';
import { LOCAL_RULES } from '../src/local/local-scope.js';

/** How a job ended, with everything it printed. */
interface JobRun {
  id: string;
  exitCode: number | undefined;
  output: string;
}

/** Runs `sh -c script` as an agent job of `client`'s identity and waits for its end. */
async function runJob(client: JigletClient, script: string, dut = ''): Promise<JobRun> {
  const job = await client.start({ command: '/bin/sh', args: ['-c', script], dut, timeoutMs: 60_000 });
  let output = '';
  for await (const event of client.output(job.id, { follow: true })) {
    if (event.type === 'chunk') output += event.data.toString('utf8');
    else return { id: job.id, exitCode: event.job.exitCode, output };
  }
  throw new Error(`the output of job ${job.id} ended without its record`);
}

/** The `rc=N` lines a script printed after each command, in order. */
const codes = (output: string): number[] => [...output.matchAll(/^rc=(\d+)$/gm)].map((m) => Number(m[1]));

describe('local endpoint: jobs drive their own DUT without a certificate', function () {
  this.timeout(60_000);
  let v: VirtualJig;
  let operator: JigletClient;
  let leaseA: string;
  before(async () => {
    v = await startVirtualJig([
      { name: 'vdut-a' },
      {
        name: 'vdut-b',
        // No certificate in its env: the check's jigctl acts through the local endpoint.
        healthCheck: {
          everyJobs: 1000, // run on request only, here
          command: [
            'sh',
            '-c',
            "jigctl power on && jigctl expect --since-power-on --pattern 'login: $' --timeout 20s",
          ],
        },
      },
    ]);
    operator = v.t.client('operator');
    leaseA = (await operator.leases.claim({ dut: 'vdut-a', ttlMs: 120_000 })).id;
  });
  after(async () => {
    await v?.stop();
  });

  it('refuses a process outside any job, saying what the socket is for', async () => {
    const path = v.t.agent.localPath;
    assert.ok(path, 'the agent serves a local endpoint');
    const stranger = new JigletClient({ server: `unix:${path}`, ca: '', cert: '', key: '' });
    try {
      await assert.rejects(stranger.jig.duts(), (err: unknown) => {
        assert.ok(err instanceof JigletError);
        assert.equal(err.code, 'JIGLET_E_PERMISSION_DENIED');
        assert.match(
          err.message,
          /serves only processes of a running jiglet job; outside a job use jigctl with a client certificate/,
        );
        return true;
      });
    } finally {
      stranger.close();
    }
  });

  it('a job with a lease powers, expects and lists its DUT through jigctl on PATH, as its owner', async () => {
    operator.lease = leaseA;
    let run: JobRun;
    try {
      // No JIGLET_LEASE, no --dut, no certificate: the job's own lease and DUT apply.
      run = await runJob(
        operator,
        [
          'test -z "$JIGLET_LEASE$JIGLET_CERT" && echo "addr=$JIGLET_ADDR"',
          'jigctl power on -o json | tr -d "\\n"; echo',
          "jigctl expect --since-power-on --pattern 'login: $' --timeout 20s",
          'jigctl jig -o json | tr -d "\\n"; echo',
        ].join(' && '),
        'vdut-a',
      );
    } finally {
      operator.lease = undefined;
    }
    assert.equal(run.exitCode, 0, run.output);
    const [addr, power, prompt, jig] = run.output.trim().split('\n');
    assert.equal(addr, `addr=unix:${v.t.agent.localPath}`);
    const switched = JSON.parse(power!) as { state: string; jobId: string };
    assert.equal(switched.state, 'on');
    assert.equal(prompt, 'vdut-a login: ');
    assert.deepEqual(
      (JSON.parse(jig!) as { name: string }[]).map((d) => d.name),
      ['vdut-a', 'vdut-b'],
    );
    // The power action is recorded as the job's owner, like a call with the owner's certificate
    // (the job that served it is the DUT's agent-owned power driver).
    const events = (await operator.records.timeline({ leaseId: leaseA })).events;
    const powered = events.filter((e) => e.fields.action === 'on' && e.fields.job === switched.jobId);
    assert.deepEqual(
      powered.map((e) => e.fields.by),
      ['operator'],
    );
  });

  it('refuses the same job another DUT, another lease, a claim and a release (PERMISSION_DENIED)', async () => {
    operator.lease = leaseA;
    let run: JobRun;
    try {
      run = await runJob(
        operator,
        [
          'jigctl power on --dut vdut-b; echo rc=$?',
          'jigctl power on --lease 0f0f0f0f-not-the-jobs-lease; echo rc=$?',
          'jigctl claim --dut vdut-b; echo rc=$?',
          `jigctl release ${leaseA}; echo rc=$?`,
        ].join('\n'),
        'vdut-a',
      );
    } finally {
      operator.lease = undefined;
    }
    assert.deepEqual(codes(run.output), [77, 77, 77, 77], run.output);
    assert.match(
      run.output,
      new RegExp(`job ${run.id} may act only on its own DUT vdut-a; this call names vdut-b`),
    );
    assert.match(
      run.output,
      new RegExp(`job ${run.id} acts only under its own lease ${leaseA}; this call carried lease 0f0f0f0f`),
    );
    assert.match(run.output, /may not claim another/);
    assert.match(run.output, /may not release leases/);
    // The lease and the DUT are still the holder's.
    assert.equal((await operator.leases.list()).find((l) => l.dut === 'vdut-a')?.id, leaseA);
  });

  it("refuses a job of another owner A's DUT and A's lease", async () => {
    const other = v.t.client('operator2');
    const leaseB = await other.leases.claim({ dut: 'vdut-b', ttlMs: 120_000 });
    other.lease = leaseB.id;
    let run: JobRun;
    try {
      run = await runJob(
        other,
        [
          'jigctl power off --dut vdut-a; echo rc=$?',
          `jigctl power off --dut vdut-a --lease ${leaseA}; echo rc=$?`,
        ].join('\n'),
        'vdut-b',
      );
    } finally {
      other.lease = undefined;
      await other.leases.release(leaseB.id);
    }
    assert.deepEqual(codes(run.output), [77, 77], run.output);
    assert.match(run.output, /may act only on its own DUT vdut-b; this call names vdut-a/);
    assert.match(
      run.output,
      new RegExp(`acts only under its own lease ${leaseB.id}; this call carried lease ${leaseA}`),
    );
    assert.equal((await operator.jig.power('vdut-a', 'status')).state, 'on');
  });

  it('lets a job without a lease read, and refuses it acting on any DUT (FAILED_PRECONDITION)', async () => {
    const run = await runJob(
      operator,
      ['jigctl power status --dut vdut-b; echo rc=$?', 'jigctl power on --dut vdut-b; echo rc=$?'].join('\n'),
    );
    assert.deepEqual(codes(run.output), [0, 1], run.output);
    assert.match(run.output, new RegExp(`job ${run.id} holds no lease, so it may not act on vdut-b`));
  });

  it('claim --exec runs a command with jigctl on PATH acting under the claimed lease', async () => {
    const r = await runJigctl(v.t, [
      ...['claim', '--dut', 'vdut-b', '--ttl', '1m', '--exec', '--'],
      ...['sh', '-c', 'jigctl power on'],
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^vdut-b: on \(/);
  });

  it("runs a DUT's health check with no certificate, acting on that DUT as the check's lease holder", async () => {
    const checked = await v.t.client('admin').jig.checkHealth('vdut-b');
    const log = await operator.output(checked.jobId, {});
    let text = '';
    for await (const event of log) if (event.type === 'chunk') text += event.data.toString('utf8');
    assert.equal(checked.passed, true, text);
    assert.match(text, /vdut-b: on /);
    assert.match(text, /vdut-b login: $/m);
  });
});

describe('local endpoint scope table (agent/src/local/local-scope.ts)', () => {
  it('decides every RPC the agent serves, so a new RPC is refused to jobs until someone decides', () => {
    assert.deepEqual(Object.keys(LOCAL_RULES).sort(), Object.keys(METHOD_PERMISSIONS).sort());
  });
});
