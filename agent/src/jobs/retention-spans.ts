/**
 * The lease spans that protect jobs from pruning: every lease held now, and every lease in the
 * run record's lease index that ended recently enough to still be reported on. The lease index
 * (at most ~8 MiB) is read once per prune pass, in the background.
 */
import type { Lease } from '../leases/lease-manager.js';
import { parseEntry } from '../timeline/journal-entry.js';
import type { LeaseSpan } from './retention-policy.js';

/** Sources of lease spans. */
export interface LeaseSpanSources {
  /** Leases held now. */
  held: () => readonly Lease[];
  /** Lines of the run record's lease index, oldest first. */
  indexLines: () => readonly string[];
}

/** Spans of held leases, and of ended ones whose end is at or after `endedSince`. */
export function leaseSpans(sources: LeaseSpanSources, endedSince: number): LeaseSpan[] {
  const spans: LeaseSpan[] = sources.held().map((l) => ({ dut: l.dut, from: l.acquiredAt }));
  const held = new Set(sources.held().map((l) => l.id));
  const granted = new Map<string, { dut: string; at: number }>();
  for (const line of sources.indexLines()) {
    const e = parseEntry(line);
    if (e?.kind !== 'lease' || held.has(e.lease)) continue;
    if (e.change === 'granted') granted.set(e.lease, { dut: e.dut, at: e.at });
    else {
      const start = granted.get(e.lease);
      granted.delete(e.lease);
      // A grant rotated out of the index: the lease counts from its end only (the safe side
      // would be "forever", which would pin jobs for good).
      if (e.at >= endedSince) spans.push({ dut: e.dut, from: start?.at ?? e.at, to: e.at });
    }
  }
  return spans;
}
