/**
 * The agent's HTTP/2 receive window (agent/src/rpc/receive-window.ts), seen as a client sees it
 * on the wire: a plain Node HTTP/2 client over the same mutual TLS reads the SETTINGS the agent
 * opens the session with and the connection window it grants. With Node's 64 KiB defaults an
 * upload waits a round trip every 64 KiB.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { startTestAgent, type TestAgent } from '../../fixtures/test-support/test-agent.js';

const WINDOW = 4 * 1024 * 1024;

describe('the agent’s HTTP/2 receive window', () => {
  let t: TestAgent;
  before(async () => {
    t = await startTestAgent();
  });
  after(() => t.stop());

  it('lets a client have 4 MiB in flight per stream and per connection, not 64 KiB', async () => {
    const as = t.pki.as('operator', t.address);
    const session = http2.connect(`https://${t.address}`, {
      ca: readFileSync(as.ca),
      cert: readFileSync(as.cert),
      key: readFileSync(as.key),
      minVersion: 'TLSv1.3',
    });
    try {
      await once(session, 'remoteSettings');
      assert.equal(session.remoteSettings.initialWindowSize, WINDOW, 'per-stream window in the SETTINGS');
      // The connection's window comes in a WINDOW_UPDATE after the SETTINGS; a ping answered
      // means every frame sent before it has been read.
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      assert.equal(session.state.remoteWindowSize, WINDOW, 'connection window');
    } finally {
      session.close();
    }
  });
});
