/**
 * The one place where errors cross the gRPC boundary: internal errors become a status with a
 * message and a code trailer on the agent, and a status becomes a JigletError on the client.
 */
import { Metadata, type ServiceError, type StatusObject, status } from '@grpc/grpc-js';
import { ERROR_CODE_METADATA_KEY, ERROR_CODES, type ErrorCode, isErrorCode, JigletError } from './errors.js';

/** A status object ready for `callback(err)` or `call.emit('error', …)`. */
export type GrpcErrorStatus = Pick<StatusObject, 'code' | 'details' | 'metadata'>;

/**
 * Maps any thrown value to a gRPC status. Unknown errors become INTERNAL with a generic message
 * (the detail goes to the agent's log, not to the client).
 */
export function toGrpcStatus(error: unknown): GrpcErrorStatus & { internal: boolean } {
  const err = error instanceof JigletError ? error : null;
  const code: ErrorCode = err?.code ?? 'JIGLET_E_INTERNAL';
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, code);
  return {
    code: ERROR_CODES[code].grpc,
    details: err ? err.message : 'internal error in the agent (see its log)',
    metadata,
    internal: err === null,
  };
}

/** Turns a client-side gRPC error back into a JigletError with the agent's code. */
export function fromGrpcError(error: ServiceError | Error): JigletError {
  if (error instanceof JigletError) return error;
  const svc = error as Partial<ServiceError>;
  const sent = svc.metadata?.get(ERROR_CODE_METADATA_KEY)[0];
  if (typeof sent === 'string' && isErrorCode(sent)) {
    return new JigletError(sent, svc.details ?? error.message, { cause: error });
  }
  return new JigletError(codeForStatus(svc.code), svc.details || error.message, { cause: error });
}

/** The closest jiglet code for a bare gRPC status (errors raised by grpc-js itself). */
function codeForStatus(code: status | undefined): ErrorCode {
  switch (code) {
    case status.UNAVAILABLE:
      return 'JIGLET_E_UNAVAILABLE';
    case status.UNAUTHENTICATED:
      return 'JIGLET_E_UNAUTHENTICATED';
    case status.PERMISSION_DENIED:
      return 'JIGLET_E_PERMISSION_DENIED';
    case status.DEADLINE_EXCEEDED:
      return 'JIGLET_E_DEADLINE_EXCEEDED';
    case status.INVALID_ARGUMENT:
      return 'JIGLET_E_INVALID_ARGUMENT';
    case status.NOT_FOUND:
      return 'JIGLET_E_NOT_FOUND';
    case status.FAILED_PRECONDITION:
      return 'JIGLET_E_FAILED_PRECONDITION';
    case status.OUT_OF_RANGE:
      return 'JIGLET_E_OUT_OF_RANGE';
    case status.RESOURCE_EXHAUSTED:
      return 'JIGLET_E_RESOURCE_EXHAUSTED';
    case status.DATA_LOSS:
      return 'JIGLET_E_DATA_LOSS';
    default:
      return 'JIGLET_E_INTERNAL';
  }
}
