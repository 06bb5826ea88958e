/** The live-heap metric: heap used right after a full collection, not between collections. */
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { waitUntil } from '../../fixtures/test-support/wait-until.js';
import { registerLiveHeap } from '../src/metrics/live-heap.js';

/** A full collection on demand (what `--expose-gc` gives, without restarting the test process). */
function fullGc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function liveBytes(registry: Registry): Promise<number> {
  const metric = await registry.getSingleMetric('jiglet_heap_live_bytes')!.get();
  return metric.values[0]?.value ?? Number.NaN;
}

describe('live heap metric', () => {
  it('reads 0 until a full collection ran, then the heap that survived it, and stops observing when asked', async () => {
    const registry = new Registry();
    const stop = registerLiveHeap([registry]);
    try {
      assert.equal(await liveBytes(registry), 0);
      fullGc();
      let read = 0;
      await waitUntil(
        'the collection to be observed',
        () => {
          void liveBytes(registry).then((v) => {
            read = v;
          });
          return read > 0;
        },
        5000,
      );
      assert.ok(read > 1024 * 1024 && read <= process.memoryUsage().heapTotal, `live heap ${read}`);
    } finally {
      stop();
    }
  });
});
