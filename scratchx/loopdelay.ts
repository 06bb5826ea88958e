import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collect } from '../fixtures/test-support/collect.js';
import { startTestAgent } from '../fixtures/test-support/test-agent.js';
const t = await startTestAgent();
const op = t.client('operator');
await collect(op, (await op.start({ command: 'true' })).id, { follow: true });
for (let r = 0; r < 3; r++) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  // A job spewing 1 GiB with nobody following, and 200 small jobs' lifecycles meanwhile? Keep it simple:
  const job = await op.start({ command: 'head', args: ['-c', String(1024 ** 3), '/dev/zero'] });
  // A client doing small RPCs meanwhile: time each.
  const rpc: number[] = [];
  for (;;) { const s = performance.now(); const j = await op.get(job.id); rpc.push(performance.now() - s); if (j.endedAt) break; }
  h.disable();
  rpc.sort((a, b) => a - b);
  const q = (p: number) => rpc[Math.min(rpc.length - 1, Math.floor(p * rpc.length))]!.toFixed(2);
  console.log(`${process.env.TAG} job ${(performance.now() - t0).toFixed(0)} ms; loop delay p50 ${(h.percentile(50) / 1e6).toFixed(2)} p99 ${(h.percentile(99) / 1e6).toFixed(2)} max ${(h.max / 1e6).toFixed(1)} ms; GetJob n=${rpc.length} p50 ${q(0.5)} p99 ${q(0.99)} max ${rpc.at(-1)!.toFixed(1)} ms`);
}
await t.stop();
