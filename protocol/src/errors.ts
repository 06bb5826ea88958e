/**
 * Every error jiglet reports on purpose. Each has a stable code (sent to clients in the
 * `jiglet-error-code` trailer) and exactly one gRPC status, so agent, CLI and tests agree.
 */
// The constants module alone: jig-driver processes (serial captures run for days) use these errors
// and must not load all of grpc-js (~14 MiB of RSS) for sixteen numbers.
import { Status as status } from '@grpc/grpc-js/build/src/constants.js';

/**
 * What each error code means and which gRPC status carries it. Where several codes share a status,
 * the first one listed is what a bare status (one raised by grpc-js itself, with no code trailer)
 * becomes on the client. The README's error table is checked against this list by a test.
 */
export const ERROR_CODES = {
  JIGLET_E_INVALID_ARGUMENT: {
    grpc: status.INVALID_ARGUMENT,
    doc: 'the request is malformed or out of range',
  },
  JIGLET_E_OUT_OF_RANGE: { grpc: status.OUT_OF_RANGE, doc: 'an offset or size lies past what exists' },
  JIGLET_E_NOT_FOUND: { grpc: status.NOT_FOUND, doc: 'no such job, DUT or resource' },
  JIGLET_E_ALREADY_EXISTS: { grpc: status.ALREADY_EXISTS, doc: 'the thing to create exists already' },
  JIGLET_E_FAILED_PRECONDITION: {
    grpc: status.FAILED_PRECONDITION,
    doc: 'the request is valid but the target is not in a state that allows it',
  },
  JIGLET_E_ILLEGAL_TRANSITION: {
    grpc: status.FAILED_PRECONDITION,
    doc: 'a job or lease state machine refused a transition',
  },
  JIGLET_E_UNAUTHENTICATED: { grpc: status.UNAUTHENTICATED, doc: 'no usable client certificate' },
  JIGLET_E_PERMISSION_DENIED: {
    grpc: status.PERMISSION_DENIED,
    doc: 'the caller’s role or ownership forbids it',
  },
  JIGLET_E_RESOURCE_EXHAUSTED: { grpc: status.RESOURCE_EXHAUSTED, doc: 'a quota or size limit was hit' },
  JIGLET_E_DEADLINE_EXCEEDED: { grpc: status.DEADLINE_EXCEEDED, doc: 'an operation ran past its deadline' },
  JIGLET_E_ABORTED: {
    grpc: status.ABORTED,
    doc: 'the operation was cut short by a conflicting one; try it again',
  },
  JIGLET_E_DRIVER_FAILED: {
    grpc: status.ABORTED,
    doc: 'a hardware driver job failed; the message carries its stderr and job id',
  },
  JIGLET_E_TAKEN_OVER: { grpc: status.ABORTED, doc: 'another user took over the console' },
  JIGLET_E_DATA_LOSS: {
    grpc: status.DATA_LOSS,
    doc: 'a file copied to or from a DUT did not arrive intact (its SHA-256 differs)',
  },
  JIGLET_E_UNAVAILABLE: { grpc: status.UNAVAILABLE, doc: 'the agent is shutting down or cannot be reached' },
  JIGLET_E_INTERNAL: { grpc: status.INTERNAL, doc: 'a bug or an unexpected host failure' },
} as const satisfies Record<string, { grpc: status; doc: string }>;

/** A stable, documented error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Metadata key that carries the error code next to the gRPC status. */
export const ERROR_CODE_METADATA_KEY = 'jiglet-error-code';

/** Base class of every deliberate jiglet error. */
export class JigletError extends Error {
  /** Creates an error with a stable code and a message a person can act on. */
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'JigletError';
  }

  /** The gRPC status this error is reported with. */
  get grpcStatus(): status {
    return ERROR_CODES[this.code].grpc;
  }
}

/** Metadata key that carries the job id of a failed driver job (see DriverFailedError). */
export const JOB_ID_METADATA_KEY = 'jiglet-job-id';
/** Metadata key that carries a failed driver's own error code (see DriverFailedError). */
export const DRIVER_ERROR_CODE_METADATA_KEY = 'jiglet-driver-error-code';

/**
 * A hardware driver job failed (JIGLET_E_DRIVER_FAILED, gRPC ABORTED). Its job and the driver's
 * own code (JIGLET_E_UNAVAILABLE for a relay that does not answer, …) travel as data, in their own
 * trailers, so a caller can branch on them without reading the message. The status stays
 * ABORTED whatever the driver said: the request was fine and the agent is reachable, the hardware
 * is what failed (a driver's UNAVAILABLE as the status would read as "cannot reach the agent").
 */
export class DriverFailedError extends JigletError {
  /** The job that ran the driver, when known. */
  readonly jobId: string | undefined;
  /** The driver's own error code, when it reported one. */
  readonly driverCode: ErrorCode | undefined;

  /** Creates the error; `message` names the DUT, the driver and what it said. */
  constructor(
    message: string,
    details: { jobId?: string; driverCode?: ErrorCode } = {},
    options?: { cause?: unknown },
  ) {
    super('JIGLET_E_DRIVER_FAILED', message, options);
    this.name = 'DriverFailedError';
    this.jobId = details.jobId || undefined;
    this.driverCode = details.driverCode;
  }
}

/** The request is malformed or a value is out of its allowed range. */
export const invalidArgument = (message: string): JigletError =>
  new JigletError('JIGLET_E_INVALID_ARGUMENT', message);

/** The named thing does not exist. */
export const notFound = (message: string): JigletError => new JigletError('JIGLET_E_NOT_FOUND', message);

/** The target's state does not allow the request. */
export const failedPrecondition = (message: string): JigletError =>
  new JigletError('JIGLET_E_FAILED_PRECONDITION', message);

/** The caller may not do this. */
export const permissionDenied = (message: string): JigletError =>
  new JigletError('JIGLET_E_PERMISSION_DENIED', message);

/** True for a known error code string. */
export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}
