/** The jiglet.v1 wire protocol: generated messages and stubs, errors and their gRPC mapping. */
export * from './gen/jiglet/v1/jobs.js';
export * from './src/errors.js';
export * from './src/status.js';
