/**
 * The one place where errors cross the gRPC boundary: internal errors become a status with a
 * message and a code trailer on the agent, and a status becomes a JigletError on the client.
 */
import { Metadata, type ServiceError, type StatusObject, type status } from '@grpc/grpc-js';
import {
  DRIVER_ERROR_CODE_METADATA_KEY,
  DriverFailedError,
  ERROR_CODE_METADATA_KEY,
  ERROR_CODES,
  type ErrorCode,
  isErrorCode,
  JigletError,
  JOB_ID_METADATA_KEY,
} from './errors.js';

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
  if (err instanceof DriverFailedError) {
    if (err.jobId) metadata.set(JOB_ID_METADATA_KEY, err.jobId);
    if (err.driverCode) metadata.set(DRIVER_ERROR_CODE_METADATA_KEY, err.driverCode);
  }
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
  if (sent === 'JIGLET_E_DRIVER_FAILED') {
    const jobId = svc.metadata?.get(JOB_ID_METADATA_KEY)[0];
    const driverCode = svc.metadata?.get(DRIVER_ERROR_CODE_METADATA_KEY)[0];
    return new DriverFailedError(
      svc.details ?? error.message,
      {
        jobId: typeof jobId === 'string' ? jobId : undefined,
        driverCode: typeof driverCode === 'string' && isErrorCode(driverCode) ? driverCode : undefined,
      },
      { cause: error },
    );
  }
  if (typeof sent === 'string' && isErrorCode(sent)) {
    return new JigletError(sent, svc.details ?? error.message, { cause: error });
  }
  return new JigletError(codeForStatus(svc.code), svc.details || error.message, { cause: error });
}

/** For each status a code uses, the first code listed with it (see ERROR_CODES). */
const CODE_OF_STATUS: ReadonlyMap<status, ErrorCode> = (() => {
  const map = new Map<status, ErrorCode>();
  for (const [code, { grpc }] of Object.entries(ERROR_CODES) as [ErrorCode, { grpc: status }][]) {
    if (!map.has(grpc)) map.set(grpc, code);
  }
  return map;
})();

/**
 * The closest jiglet code for a bare gRPC status (errors raised by grpc-js itself): every status
 * a code is sent with maps back to a code sent with that status; any other becomes INTERNAL.
 */
export function codeForStatus(code: status | undefined): ErrorCode {
  return (code === undefined ? undefined : CODE_OF_STATUS.get(code)) ?? 'JIGLET_E_INTERNAL';
}
