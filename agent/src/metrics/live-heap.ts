/**
 * The heap that survived the last full collection: what the agent really keeps. Heap used
 * between two collections is mostly garbage not yet collected, so it rises and falls with the
 * allocation rate and the collector's timing; a leak shows in this figure instead.
 */
import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** Registers `jiglet_heap_live_bytes`; the returned function stops observing collections. */
export function registerLiveHeap(registers: Registry[]): () => void {
  let live = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const { detail } = entry as PerformanceEntry & { detail?: { kind?: number } };
      if (detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) live = process.memoryUsage().heapUsed;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  new Gauge({
    name: 'jiglet_heap_live_bytes',
    help: 'V8 heap used right after the last full garbage collection (0 until one ran)',
    registers,
    collect() {
      this.set(live);
    },
  });
  return () => observer.disconnect();
}
