/** The lease a call carries: the `jiglet-lease` metadata header (one value, a lease id). */
import type { Metadata } from '@grpc/grpc-js';
import { invalidArgument } from '../../../protocol/src/errors.js';

/** Metadata key of the lease id on mutating calls. */
export const LEASE_METADATA_KEY = 'jiglet-lease';

/** The lease id the call carries, if any. */
export function leaseOf(call: { metadata: Metadata }): string | undefined {
  const values = call.metadata.get(LEASE_METADATA_KEY);
  if (values.length === 0) return undefined;
  if (values.length > 1)
    throw invalidArgument(`a call carries one ${LEASE_METADATA_KEY}, got ${values.length}`);
  const value = String(values[0]);
  if (value.length > 64) throw invalidArgument(`"${value.slice(0, 16)}…" is too long to be a lease id`);
  return value;
}
