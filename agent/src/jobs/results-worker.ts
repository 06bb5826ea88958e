/**
 * Worker thread body: reads one results folder (see junit-files.ts) off the agent's event loop,
 * where 16 MiB of XML would hold every lease heartbeat and stream for seconds.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type ReadResultsOptions, readResults } from '../../../protocol/src/junit-files.js';

const { dir, opts } = workerData as { dir: string; opts: ReadResultsOptions };
parentPort?.postMessage(readResults(dir, opts));
