/**
 * The test cases an agent job reported (JUnit XML it wrote to `$JIGLET_RESULTS/`), as the agent
 * read them when the job ended.
 */
import type { Job } from '../../protocol/gen/jiglet/v1/jobs.js';
import { fromWireTestCase } from '../../protocol/src/test-case-wire.js';
import type { TestCase } from '../../protocol/src/test-cases.js';

/** The job's test cases, in the order its files listed them; [] when it reported none. */
export function testCasesOf(job: Job): TestCase[] {
  return job.testCases.map(fromWireTestCase);
}
