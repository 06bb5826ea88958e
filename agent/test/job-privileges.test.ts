/**
 * Users' jobs run with least privilege: a uid of their owner's own, nothing of the agent's (its
 * TLS keys, its state directory) or of another owner's jobs within reach, and a DUT's lease
 * devices only while the lease is held. Real users, real setpriv, real ACLs; CI runs as root.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCerts, issueClientCert } from '../../client/src/certs.js';
import { JigletClient } from '../../client/src/jiglet-client.js';
import { collect } from '../../fixtures/test-support/collect.js';
import { type JigletProcess, startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { startTestAgent } from '../../fixtures/test-support/test-agent.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { JobState } from '../../protocol/gen/jiglet/v1/jobs.js';

function getfacl(path: string): string {
  return execFileSync('getfacl', ['-n', '-p', path], { encoding: 'utf8' });
}

/** Runs `script` as a job of `client`'s identity and returns its output and final record. */
async function runAs(client: JigletClient, script: string, opts: { dut?: string; lease?: string } = {}) {
  client.lease = opts.lease;
  const job = await client.start({ command: 'sh', args: ['-c', script], dut: opts.dut });
  const { all, finished } = await collect(client, job.id, { follow: true });
  client.lease = undefined;
  return { out: all.toString(), job: finished! };
}

// The jiglet binary as a lab runs it (its umask, its state directory), with certificates from
// `certs init` in a folder anyone may pass through, as `./tls` beside a lab's checkout would be.
describe('job privileges (jiglet serve)', function () {
  this.timeout(30_000);
  let work: string;
  let tls: string;
  let state: string;
  let config: string;
  let device: string;
  let agent: JigletProcess | undefined;
  const clients: JigletClient[] = [];
  const as = (name: string): JigletClient => {
    const c = new JigletClient({
      server: agent!.address,
      ca: join(tls, 'ca.crt'),
      cert: join(tls, `${name}.crt`),
      key: join(tls, `${name}.key`),
    });
    clients.push(c);
    return c;
  };
  const start = async (): Promise<void> => {
    agent = await startJigletProcess({ stateDir: state, tlsDir: join(tls, 'jig'), config });
  };
  const stop = async (): Promise<void> => {
    for (const c of clients.splice(0)) c.close();
    await agent?.stop();
    agent = undefined;
  };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'jiglet-priv-'));
    chmodSync(work, 0o755);
    tls = join(work, 'tls');
    await initCerts({ dir: tls, hosts: ['localhost', '127.0.0.1'] });
    await issueClientCert({ dir: tls, name: 'bob', role: 'operator' });
    // Even folders a careless admin opened up keep the keys: they are 0600 and jobs are not root.
    for (const d of [tls, join(tls, 'ca'), join(tls, 'jig')]) chmodSync(d, 0o755);
    // A character device (like /dev/null) only root may open, standing in for a DUT's DFU node.
    const devDir = join(work, 'dev');
    mkdirSync(devDir, { mode: 0o755 });
    device = join(devDir, 'dut-dfu');
    execFileSync('mknod', ['-m', '0600', device, 'c', '1', '3']);
    config = join(work, 'jig.yaml');
    writeFileSync(config, `duts:\n  - name: pdut\n    leaseDevices: [${device}]\n`);
    state = join(work, 'state');
    await start();
  });
  after(async () => {
    await stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("runs an operator's job as a uid of its own that reaches nothing of the agent's", async () => {
    const first = await runAs(as('bob'), 'echo secret > notes; env > /dev/null');
    assert.equal(first.job.state, JobState.JOB_STATE_EXITED);
    const other = first.job.id;
    // A lease leaves its files in the state directory too.
    const alice = as('operator');
    await alice.leases.release((await alice.leases.claim({ dut: 'pdut', ttlMs: 60_000 })).id);
    const targets = [
      join(tls, 'ca', 'ca.key'),
      join(tls, 'jig', 'server.key'),
      join(tls, 'admin.key'),
      join(state, 'jobs', other, 'job.json'),
      join(state, 'jobs', other, 'output.log'),
      join(state, 'job-users.json'),
      join(state, 'work', other, 'notes'),
      ...readdirSync(state)
        .filter((f) => f !== 'work')
        .map((f) => join(state, f)),
    ];
    const script = [
      'id -u',
      `for f in ${targets.join(' ')}; do cat "$f" >/dev/null 2>&1 && echo "READ $f"; [ -d "$f" ] && ls "$f" >/dev/null 2>&1 && echo "LISTED $f"; done`,
      `ls ${state} >/dev/null 2>&1 && echo LISTED-STATE`,
      `ls ${join(state, 'work', other)} >/dev/null 2>&1 && echo LISTED-OTHER`,
      'echo mine > here && cat here && cat "$HOME/here"',
    ].join('\n');
    const { out, job } = await runAs(alice, script);
    assert.equal(job.state, JobState.JOB_STATE_EXITED, out);
    const [uid, ...rest] = out.trim().split('\n');
    assert.notEqual(Number(uid), 0, 'the job runs as root');
    assert.deepEqual(rest, ['mine', 'mine'], `the job reached the agent's or another owner's files:\n${out}`);
  });

  it("cannot signal another owner's job", async () => {
    const bob = as('bob');
    const sleeper = await bob.start({ command: 'sleep', args: ['1000'] });
    const { out } = await runAs(as('operator'), `kill -TERM ${sleeper.pid} 2>&1; echo rc=$?`);
    assert.match(out, /not permitted/);
    assert.match(out, /rc=1/);
    assert.equal((await bob.get(sleeper.id)).state, JobState.JOB_STATE_RUNNING);
    await bob.stop(sleeper.id, 200);
  });

  it('gives each owner its own uid, the same after a restart', async () => {
    const uids = async () => {
      const out = [];
      for (const who of ['operator', 'bob', 'admin']) out.push(Number((await runAs(as(who), 'id -u')).out));
      return out;
    };
    const before = await uids();
    assert.equal(new Set(before).size, 3, `uids ${before} are not distinct`);
    await stop();
    await start();
    assert.deepEqual(await uids(), before);
  });

  it("lets the lease holder's jobs open the DUT's lease devices while the lease lasts", async () => {
    const probe = `cat ${device} >/dev/null 2>&1 && echo OPEN || echo DENIED`;
    const alice = as('operator');
    assert.equal((await runAs(alice, probe)).out.trim(), 'DENIED', 'before any lease');
    const lease = await alice.leases.claim({ dut: 'pdut', ttlMs: 60_000 });
    const during = await runAs(alice, probe, { dut: 'pdut', lease: lease.id });
    assert.equal(during.out.trim(), 'OPEN', 'the holder’s job during the lease');
    assert.equal((await runAs(as('bob'), probe)).out.trim(), 'DENIED', 'another owner');
    await alice.leases.release(lease.id);
    // Taking the grant back follows the release, off its path; it is on the node in a moment.
    const uid = Number((await runAs(alice, 'id -u')).out.trim());
    await waitUntil('the ACL entry to go', () => !getfacl(device).includes(`user:${uid}:`));
    assert.equal((await runAs(alice, probe)).out.trim(), 'DENIED', 'after the lease ended');
  });
});

describe('job uids and the host', function () {
  this.timeout(30_000);
  it('skips uids the host already uses, and keeps owners apart in single-user mode only from the agent', async () => {
    const first = 62000 + randomInt(0, 3000);
    const name = `jgt${first}`;
    execFileSync('useradd', ['--system', '--no-create-home', '--uid', String(first), name]);
    const t = await startTestAgent({ jobUsers: { mode: 'per-owner', first, last: first + 5 } });
    try {
      const job = await t.client('operator').start({ command: 'id', args: ['-u'] });
      const { all } = await collect(t.client('operator'), job.id, { follow: true });
      assert.equal(Number(all.toString()), first + 1, `${name} owns ${first}: the next one is taken`);
    } finally {
      await t.stop();
      execFileSync('userdel', [name]);
    }
    const single = await startTestAgent({ jobUsers: { mode: 'single', uid: 65534, gid: 65534 } });
    try {
      const ids = [];
      for (const who of ['operator', 'operator2']) {
        const job = await single.client(who).start({ command: 'id', args: ['-u'] });
        ids.push((await collect(single.client(who), job.id, { follow: true })).all.toString().trim());
      }
      assert.deepEqual(ids, ['65534', '65534']);
    } finally {
      await single.stop();
    }
  });
});
