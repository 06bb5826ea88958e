/**
 * A failed driver crosses the gRPC boundary with its job and its own code as data: the status
 * stays ABORTED (the hardware failed, not the request or the agent), the rest rides in trailers.
 */
import assert from 'node:assert/strict';
import { type ServiceError, status } from '@grpc/grpc-js';
import { DriverFailedError, JigletError } from '../src/errors.js';
import { fromGrpcError, toGrpcStatus } from '../src/status.js';

/** What a grpc-js client gets for a status the agent sent. */
function received(sent: ReturnType<typeof toGrpcStatus>): ServiceError {
  return Object.assign(new Error(`${sent.code} ${status[sent.code]}: ${sent.details}`), sent) as ServiceError;
}

describe('a failed driver over gRPC', () => {
  it('keeps the job and the driver code, under the ABORTED status', () => {
    const err = new DriverFailedError(
      'power on of rpi4-a failed: the tasmota driver failed: refused (job j-1)',
      {
        jobId: 'j-1',
        driverCode: 'JIGLET_E_UNAVAILABLE',
      },
    );
    const sent = toGrpcStatus(err);
    assert.equal(sent.code, status.ABORTED);
    assert.equal(sent.internal, false);
    const back = fromGrpcError(received(sent));
    assert.ok(back instanceof DriverFailedError);
    assert.equal(back.code, 'JIGLET_E_DRIVER_FAILED');
    assert.equal(back.message, err.message);
    assert.equal(back.jobId, 'j-1');
    assert.equal(back.driverCode, 'JIGLET_E_UNAVAILABLE');
  });

  it('reads a driver failure without trailers (an older agent) as one with no job or code', () => {
    const sent = toGrpcStatus(new JigletError('JIGLET_E_DRIVER_FAILED', 'flash of d failed'));
    const back = fromGrpcError(received(sent));
    assert.ok(back instanceof DriverFailedError);
    assert.deepEqual([back.jobId, back.driverCode], [undefined, undefined]);
  });
});
