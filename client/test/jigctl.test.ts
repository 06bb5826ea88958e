/**
 * The jigctl binary as CI scripts and engineers use it: exit codes, streams kept apart, one-line
 * errors (never a stack trace), and Ctrl-C stopping the remote job.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { assertOneLineError, JIGCTL, runJigctl } from '../../fixtures/test-support/run-jigctl.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

const jigctl = runJigctl;

describe('jigctl', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(async () => {
    await t.stop();
  });

  it('run streams stdout and stderr apart and exits with the job code', async () => {
    const r = await jigctl(t, ['run', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    assert.equal(r.code, 3);
  });

  it('run -i forwards a piped stdin to the job, binary-safe', async () => {
    const input = Buffer.concat([
      Buffer.from('line one\n'),
      Buffer.from([0, 0xff, 0x0d]),
      Buffer.alloc(300_000, 0x61),
    ]);
    const r = await jigctl(t, ['run', '-i', '--', 'sha256sum'], { input });
    const { createHash } = await import('node:crypto');
    assert.equal(r.stdout.split(' ')[0], createHash('sha256').update(input).digest('hex'));
    assert.equal(r.code, 0);
  });

  it('run exits 128+N when the job dies of signal N, like ssh', async () => {
    const r = await jigctl(t, ['run', '--', 'sh', '-c', 'kill -TERM $$']);
    assert.equal(r.code, 143);
  });

  it('run reports a missing program and exits 127', async () => {
    const r = await jigctl(t, ['run', '--', 'no-such-program-xyz']);
    assert.equal(r.code, 127);
    // Which program, and what to do; not the agent's whole PATH.
    assert.equal(
      r.stderr,
      "jigctl: failed: command not found: no-such-program-xyz (not on the agent's PATH; give a full path)\n",
    );
  });

  it('stop of a job that already ended says how it ended and exits 0, like kill of a finished process', async () => {
    const done = (await jigctl(t, ['start', '--', 'true'])).stdout.trim();
    await jigctl(t, ['logs', '-f', done]);
    const exited = await jigctl(t, ['stop', done]);
    assert.equal(exited.code, 0, exited.stderr);
    assert.match(
      exited.stdout,
      new RegExp(`^job ${done} already ended \\(exited with code 0 at \\d\\d:\\d\\d:\\d\\d\\)\n$`),
    );
    const running = (await jigctl(t, ['start', '--', 'sleep', '600'])).stdout.trim();
    assert.match(
      (await jigctl(t, ['stop', running])).stdout,
      /^job \S+ stopped by request at \d\d:\d\d:\d\d\n$/,
    );
    const again = await jigctl(t, ['stop', running]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already ended \(stopped by request at \d\d:\d\d:\d\d\)\n$/);
    assert.equal(again.stderr, '');
  });

  it('Ctrl-C in run stops the remote job', async () => {
    const r = await jigctl(t, ['run', '--', 'sh', '-c', 'echo ready; exec sleep 600'], {
      onStdout: (s, child) => {
        if (s === 'ready\n') child.kill('SIGINT');
      },
    });
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /stopping job/);
    const [job] = await t.client('admin').list({ states: [JobState.JOB_STATE_STOPPED] });
    assert.equal(job?.spec?.args.at(-1), 'echo ready; exec sleep 600');
  });

  it('start prints only the job id; status and list speak JSON', async () => {
    const r = await jigctl(t, ['start', '--', 'echo', 'hi']);
    assert.equal(r.code, 0);
    const id = r.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    const logs = await jigctl(t, ['logs', '-f', id]);
    assert.equal(logs.stdout, 'hi\n');
    const status = JSON.parse((await jigctl(t, ['status', id, '-o', 'json'])).stdout);
    assert.equal(status.state, 'exited');
    const text = await jigctl(t, ['status', id]);
    assert.match(text.stdout, /^state: +exited with code 0$/m);
    assert.equal(status.exitCode, 0);
    const list = JSON.parse((await jigctl(t, ['list', '-o', 'json'], { as: 'viewer' })).stdout);
    assert.ok(list.some((j: { id: string }) => j.id === id));
    const tail = await jigctl(t, ['logs', id, '--offset', '1']);
    assert.equal(tail.stdout, 'i\n');
  });

  it('exits 69 with one line when the agent cannot be reached', async () => {
    const r = await jigctl(t, ['list'], { address: '127.0.0.1:1' });
    assert.equal(r.code, 69);
    assertOneLineError(r);
    // One sentence: who, where, what to check (no grpc-js "Resolution note:" tail).
    assert.equal(
      r.stderr,
      'jigctl: cannot reach the agent at 127.0.0.1:1: nothing accepts connections there (connection refused); ' +
        'check that `jiglet serve` runs there and that --server (or JIGLET_ADDR) names it\n',
    );
  });

  it('exits 77 when the role forbids the call or the certificate is refused', async () => {
    const viewer = await jigctl(t, ['run', '--', 'true'], { as: 'viewer' });
    assert.equal(viewer.code, 77);
    assertOneLineError(viewer);
    assert.match(
      viewer.stderr,
      /^jigctl: viewer \(role viewer\) may not start jobs; that needs a certificate with the operator or admin role\n$/,
    );
    const stranger = await jigctl(t, ['list'], { as: 'stranger' });
    assert.equal(stranger.code, 77, stranger.stderr);
    assertOneLineError(stranger);
  });

  it('exits 2 for usage errors, local or found by the agent', async () => {
    for (const args of [['bogus'], ['run', '--memory', 'lots', '--', 'true'], ['run'], ['stop']]) {
      const r = await jigctl(t, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    }
  });

  it('states a range the agent refuses in the flag and units the user typed', async () => {
    const timeout = await jigctl(t, ['run', '--timeout', '200h', '--', 'true']);
    assert.equal(timeout.code, 2);
    assert.equal(timeout.stderr, 'jigctl: --timeout must be between 0s and 168h (got 200h)\n');
    const memory = await jigctl(t, ['run', '--memory', '1M', '--', 'true']);
    assert.equal(memory.code, 2);
    assert.match(
      memory.stderr,
      /^jigctl: --memory must be between 4M and \d+M, this host's memory \(got 1M\)\n$/,
    );
    const pids = await jigctl(t, ['run', '--pids', '9999999999', '--', 'true']);
    assert.equal(pids.code, 2);
    assert.equal(pids.stderr, 'jigctl: --pids must be a whole number from 1 to 4194304 (got 9999999999)\n');
    const cwd = await jigctl(t, ['run', '--cwd', 'src', '--', 'true']);
    assert.equal(cwd.code, 2);
    assert.equal(cwd.stderr, 'jigctl: --cwd must be an absolute path on the jig host (got "src")\n');
  });

  it('says where to put certificates when none are configured', async () => {
    const child = spawn(process.execPath, [JIGCTL, 'list'], {
      env: { PATH: process.env.PATH, JIGLET_CONFIG: '/nonexistent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    const [code] = await once(child, 'close');
    assert.equal(code, 2);
    assert.match(stderr, /no client certificate configured: set --ca\/JIGLET_CA/);
  });
});
