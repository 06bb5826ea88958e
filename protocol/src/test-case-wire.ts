/**
 * Test cases between their plain form (test-cases.ts) and the Job message's `test_cases`: the
 * agent writes them with `toWireTestCase`, every client reads them with `fromWireTestCase`.
 */
import { TestCaseStatus, type TestCase as WireTestCase } from '../gen/jiglet/v1/jobs.js';
import type { TestCaseStatus as StatusName, TestCase } from './test-cases.js';

const TO_WIRE: Record<StatusName, TestCaseStatus> = {
  passed: TestCaseStatus.TEST_CASE_STATUS_PASSED,
  failed: TestCaseStatus.TEST_CASE_STATUS_FAILED,
  error: TestCaseStatus.TEST_CASE_STATUS_ERROR,
  skipped: TestCaseStatus.TEST_CASE_STATUS_SKIPPED,
};

/** A case as the Job message carries it. */
export function toWireTestCase(c: TestCase): WireTestCase {
  return {
    suite: c.suite,
    name: c.name,
    status: TO_WIRE[c.status],
    durationMs: BigInt(Math.max(0, Math.round(c.durationMs))),
    message: c.message,
  };
}

/** A case from the Job message; a status this version does not know reads as `error`. */
export function fromWireTestCase(c: WireTestCase): TestCase {
  const status = (Object.keys(TO_WIRE) as StatusName[]).find((k) => TO_WIRE[k] === c.status) ?? 'error';
  return {
    suite: c.suite,
    name: c.name,
    status,
    durationMs: Number(c.durationMs),
    message: c.message,
  };
}
