/**
 * Dropped output streams leave nothing behind. Many StreamOutput(follow) calls per connection to
 * a finished multi-MiB log, each stalled mid-send (the client read one message and stopped), then
 * dropped every way a client goes: cancelled, connection cut, client process killed. The client is
 * plain @grpc/grpc-js, not jiglet's client library. Afterwards the agent's sockets, log file
 * handles, followers and memory after GC are back where they were.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type ClientReadableStream, credentials } from '@grpc/grpc-js';
import { FOLLOW_INFLIGHT_BYTES } from '../../agent/src/output/follow-log.js';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { JobServiceClient, type StreamOutputResponse } from '../../protocol/gen/jiglet/v1/jobs.js';

const STREAMS = 25;
const LOG_BYTES = 4 * 1024 * 1024;

// The agent runs in this process: a full GC before each memory figure makes them comparable.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Memory a dropped stream could pin: JS heap plus Buffers (pieces, frames). */
function memoryAfterGc(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** Open fds of this process (the agent's), split into sockets and handles on `suffix`. */
function fds(suffix: string): { sockets: number; onLog: number } {
  let sockets = 0;
  let onLog = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed while we listed
    }
    if (target.startsWith('socket:')) sockets += 1;
    else if (target.endsWith(suffix)) onLog += 1;
  }
  return { sockets, onLog };
}

/**
 * The agent's end of its TCP connections on `port` that this process holds open: sockets whose
 * local port is the agent's (its accepted connections), not the test's own clients, relay or
 * child-process pipes, which come and go with the load of whatever else runs beside the test.
 */
function agentConnections(port: number): number {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = Number.parseInt(cols[1]!.split(':')[1]!, 16);
      // 0A is LISTEN: the listening socket is not a connection.
      if (localPort === port && cols[3] !== '0A') inodes.add(cols[9]!);
    }
  }
  let open = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m && inodes.has(m[1]!)) open += 1;
    } catch {
      // closed meanwhile
    }
  }
  return open;
}

/** A TCP relay in front of the agent, so a test can cut a client's connection under it. */
async function startRelay(target: number): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = connect(target, '127.0.0.1');
    for (const s of [down, up]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => {});
    }
    down.pipe(up).pipe(down);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return {
    port: address.port,
    cut() {
      // resetAndDestroy: an RST, as when a client host vanishes, not a polite FIN.
      for (const s of open) s.resetAndDestroy();
    },
    async close() {
      server.close();
      await once(server, 'close');
    },
  };
}

describe('dropped output streams', function () {
  this.timeout(120_000);
  let t: TestAgent;
  let jobId: string;
  before(async () => {
    t = await startTestAgent();
    const op = t.client('operator');
    const job = await op.start({ command: 'head', args: ['-c', String(LOG_BYTES), '/dev/urandom'] });
    jobId = job.id;
    await waitUntil('the job to finish', () => t.agent.supervisor.get(jobId).output().closed, 15_000);
  });
  after(async () => {
    await t.stop();
  });

  /** A grpc-js client of its own (one connection), to `address`. */
  function rawClient(address: string): JobServiceClient {
    const s = t.pki.as('operator', address);
    return new JobServiceClient(
      address,
      credentials.createSsl(readFileSync(s.ca), readFileSync(s.key), readFileSync(s.cert)),
      // No channel sharing with other clients: each round is its own connection.
      { 'grpc.use_local_subchannel_pool': 1 },
    );
  }

  /**
   * Opens STREAMS follows on `client` and never reads them: each agent-side follower sends until
   * its transport is full and is then blocked mid-send. (A client that read one message and paused
   * would hold HTTP/2's shared connection window with the unread rest and could starve the others.)
   */
  async function stalledFollows(
    client: JobServiceClient,
    expected: number,
  ): Promise<ClientReadableStream<StreamOutputResponse>[]> {
    const calls = Array.from({ length: STREAMS }, () => {
      const call = client.streamOutput({ id: jobId, offset: 0n, follow: true });
      call.on('error', () => {}); // CANCELLED / UNAVAILABLE: expected, we drop them
      return call;
    });
    await waitUntil('the agent to follow for every call', () => followingNow() === expected, 10_000);
    return calls;
  }

  /**
   * A client process (plain grpc-js) with STREAMS follows on one connection to `address` that it
   * never reads. Its own sockets stay out of this process's fd table, which is the agent's.
   */
  function dropperProcess(address: string): { kill(): Promise<void> } {
    const child = spawn(
      process.execPath,
      [
        join(import.meta.dirname, '../../dist/fixtures/test-support/drop-streams-client.js'),
        address,
        ...(['ca', 'cert', 'key'] as const).map((k) => t.pki.as('operator', address)[k]),
        jobId,
        String(STREAMS),
        'kill',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, JIGLET_DROP_READ: '0' } },
    );
    const exited = once(child, 'exit');
    return {
      async kill() {
        child.kill('SIGKILL');
        await exited;
      },
    };
  }

  /** Followers the agent has, counted both by its registry and by readers of the log. */
  function followingNow(): number {
    const followers = t.agent.grpc.followers.active.size;
    return followers === t.agent.supervisor.get(jobId).output().readers ? followers : -1;
  }

  it('gives back sockets, file handles, followers and memory however the client goes', async () => {
    const log = t.agent.supervisor.get(jobId).output();
    const registry = t.agent.grpc.followers;
    const followers = registry.active;
    const relay = await startRelay(t.agent.port);
    try {
      // Warm-up round, so lazily created things (TLS contexts, grpc-js and protobuf code paths)
      // are part of the baseline, not counted as growth.
      const preWarm = fds(`${jobId}/output.log`).sockets;
      const warm = rawClient(t.address);
      for (const c of await stalledFollows(warm, STREAMS)) c.cancel();
      warm.close();
      await waitUntil('warm-up followers to leave', () => followers.size === 0);
      await waitUntil('the warm-up connection to close', () => fds(`${jobId}/output.log`).sockets <= preWarm);
      const base = fds(`${jobId}/output.log`);
      const baseConnections = agentConnections(Number(t.address.split(':').at(-1)));
      const baseMemory = memoryAfterGc();

      for (let round = 0; round < 2; round++) {
        // 1. The client cancels every call, then closes its channel.
        const c1 = rawClient(t.address);
        const calls = await stalledFollows(c1, STREAMS);
        for (const c of calls) c.cancel();
        c1.close();
        await waitUntil('followers of the cancelled calls to leave', () => followers.size === 0);

        // 2. The connection is cut under live calls (RST), the client never says goodbye.
        const cutClient = dropperProcess(`127.0.0.1:${relay.port}`);
        await waitUntil('the agent to follow for every call', () => followingNow() === STREAMS, 10_000);
        // Mid-send: every follower has filled its share of the transport and waits. What it
        // handed grpc-js is bounded in bytes; grpc-js's own queue held 16 messages per stream.
        await waitUntil('every follower to wait for its client', () => registry.stalled === STREAMS, 10_000);
        const pinned = memoryAfterGc() - baseMemory;
        assert.ok(
          pinned < STREAMS * 3 * FOLLOW_INFLIGHT_BYTES,
          `${STREAMS} stalled followers pin ${(pinned / 2 ** 20).toFixed(1)} MiB`,
        );
        relay.cut();
        // Mostly at once; when the agent's socket was mid-write at the cut, Node's HTTP/2 session
        // is not reading it and only the server keepalive (10 s + 5 s) notices the peer is gone.
        await waitUntil('followers of the cut connection to leave', () => followers.size === 0, 30_000);
        await cutClient.kill();
      }

      // 3. The client process is killed (SIGKILL) with its calls stalled mid-send.
      const killed = dropperProcess(t.address);
      await waitUntil('the agent to follow for every call', () => followingNow() === STREAMS, 10_000);
      await killed.kill();

      await waitUntil('every follower to leave', () => followers.size === 0, 10_000);
      assert.equal(registry.stalled, 0, 'followers still waiting for a transport');
      await waitUntil('log readers and waiters to be released', () => log.readers === 0 && log.waiting === 0);
      // As with the cut above: a socket killed mid-write is noticed by the keepalive (10 s + 5 s),
      // late under load.
      const agentPort = Number(t.address.split(':').at(-1));
      await waitUntil(
        'the agent to close the dropped connections',
        () => agentConnections(agentPort) <= baseConnections,
        30_000,
      ).catch((err: unknown) => {
        throw new Error(
          `${(err as Error).message}: ${agentConnections(agentPort)} connections, ${baseConnections} before (${fds(`${jobId}/output.log`).sockets} sockets in all, ${base.sockets} before)`,
        );
      });
      assert.equal(fds(`${jobId}/output.log`).onLog, base.onLog, 'file handles on the log');
      const grown = memoryAfterGc() - baseMemory;
      // 125 dropped streams that had ~1.2 GiB of log to send between them: a few MiB of noise.
      assert.ok(grown < 8 * 2 ** 20, `memory after GC grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      relay.cut();
      await relay.close();
    }
  });
});
