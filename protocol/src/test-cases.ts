/**
 * Test-case results as a run reports them: JUnit XML files, the format mocha, pytest, go test
 * (go-junit-report), ctest and most CI systems read and write. A job writes them to
 * `$JIGLET_RESULTS/`; the agent, the queue and `jigctl` all read them through this one parser and
 * write them back out through this one renderer, so a case looks the same everywhere.
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

/** How one test case ended. `error` is JUnit's "could not run properly", not an assertion failure. */
export type TestCaseStatus = 'passed' | 'failed' | 'error' | 'skipped';

export const TEST_CASE_STATUSES: readonly TestCaseStatus[] = ['passed', 'failed', 'error', 'skipped'];

/** One test case of a run. */
export interface TestCase {
  /** The suite (JUnit `testsuite` name, or the case's `classname` when that says more). */
  suite: string;
  name: string;
  status: TestCaseStatus;
  /** How long it ran, in milliseconds (0 when the file did not say). */
  durationMs: number;
  /** Why it failed, errored or was skipped: the first part of the framework's message. */
  message: string;
}

/** A file's cases beyond this many are dropped (and said so): the queue stores each one. */
export const MAX_TEST_CASES = 10_000;
/** Messages are cut to this many characters; the whole text stays in the job's own output. */
export const MAX_MESSAGE_CHARS = 2000;

type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  // Always arrays, so a file with one suite or one case reads like one with many.
  isArray: (name) => ['testsuite', 'testcase', 'failure', 'error', 'skipped'].includes(name),
  processEntities: true,
  htmlEntities: false,
});

/** Why a results file could not be read, said so a person can fix the test setup. */
export class TestResultsError extends Error {}

/** Parses one JUnit XML document into its cases, in file order. */
export function parseJunit(xml: string, fileName = 'results'): TestCase[] {
  let doc: XmlNode;
  try {
    doc = parser.parse(xml, true) as XmlNode;
  } catch (err) {
    throw new TestResultsError(`${fileName} is not well-formed XML: ${(err as Error).message}`);
  }
  const roots: XmlNode[] = [];
  const top = doc.testsuites as XmlNode | '' | undefined;
  if (top !== undefined) roots.push(top === '' ? {} : top);
  else if (doc.testsuite !== undefined) roots.push({ testsuite: doc.testsuite });
  else throw new TestResultsError(`${fileName} is not JUnit XML: it has no <testsuites> or <testsuite>`);
  const cases: TestCase[] = [];
  for (const root of roots) collectSuites(root, '', cases);
  return cases.slice(0, MAX_TEST_CASES);
}

function collectSuites(node: XmlNode, outer: string, into: TestCase[]): void {
  for (const suite of asNodes(node.testsuite)) {
    const name = attr(suite, 'name') || outer;
    for (const testcase of asNodes(suite.testcase)) into.push(caseOf(testcase, name));
    // pytest and some go reporters nest suites inside suites.
    collectSuites(suite, name, into);
  }
}

function caseOf(node: XmlNode, suiteName: string): TestCase {
  const failure = asNodes(node.failure)[0];
  const error = asNodes(node.error)[0];
  const skipped = asNodes(node.skipped)[0];
  const status: TestCaseStatus = failure ? 'failed' : error ? 'error' : skipped ? 'skipped' : 'passed';
  const detail = failure ?? error ?? skipped;
  const seconds = Number.parseFloat(attr(node, 'time'));
  return {
    suite: suiteName || attr(node, 'classname'),
    name: attr(node, 'name') || '(unnamed)',
    status,
    durationMs: Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : 0,
    message: detail ? messageOf(detail) : '',
  };
}

function messageOf(node: XmlNode | string): string {
  if (typeof node === 'string') return clip(node);
  const text = attr(node, 'message') || String(node['#text'] ?? '');
  return clip(text);
}

function clip(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > MAX_MESSAGE_CHARS ? `${trimmed.slice(0, MAX_MESSAGE_CHARS - 1)}…` : trimmed;
}

function asNodes(value: unknown): XmlNode[] {
  if (!Array.isArray(value)) return [];
  // An empty element (<failure/>) parses as '' rather than an object.
  return value.map((v) => (typeof v === 'object' && v !== null ? (v as XmlNode) : { '#text': v }));
}

function attr(node: XmlNode, name: string): string {
  const value = node[`@${name}`];
  return value === undefined ? '' : String(value);
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  format: true,
  suppressEmptyNode: true,
});

/** Writes cases as one JUnit XML document (suites in first-seen order), for a CI system to read. */
export function renderJunit(cases: readonly TestCase[], name = 'jiglet'): string {
  const suites = new Map<string, TestCase[]>();
  for (const c of cases) {
    const list = suites.get(c.suite) ?? [];
    list.push(c);
    suites.set(c.suite, list);
  }
  const count = (list: readonly TestCase[], status: TestCaseStatus): number =>
    list.filter((c) => c.status === status).length;
  const seconds = (list: readonly TestCase[]): string =>
    (list.reduce((sum, c) => sum + c.durationMs, 0) / 1000).toFixed(3);
  const doc = {
    '?xml': { '@version': '1.0', '@encoding': 'UTF-8' },
    testsuites: {
      '@name': name,
      '@tests': cases.length,
      '@failures': count(cases, 'failed'),
      '@errors': count(cases, 'error'),
      '@skipped': count(cases, 'skipped'),
      '@time': seconds(cases),
      testsuite: [...suites].map(([suite, list]) => ({
        '@name': suite,
        '@tests': list.length,
        '@failures': count(list, 'failed'),
        '@errors': count(list, 'error'),
        '@skipped': count(list, 'skipped'),
        '@time': seconds(list),
        testcase: list.map((c) => ({
          '@classname': c.suite,
          '@name': c.name,
          '@time': (c.durationMs / 1000).toFixed(3),
          ...(c.status === 'failed' ? { failure: { '@message': c.message } } : {}),
          ...(c.status === 'error' ? { error: { '@message': c.message } } : {}),
          ...(c.status === 'skipped' ? { skipped: { '@message': c.message } } : {}),
        })),
      })),
    },
  };
  return builder.build(doc) as string;
}

/** "3 passed, 1 failed, 0 errors, 2 skipped": the one-line summary jigctl and reports print. */
export function testCaseSummary(cases: readonly TestCase[]): string {
  const n = (status: TestCaseStatus): number => cases.filter((c) => c.status === status).length;
  if (cases.length === 0) return 'no test cases reported';
  const parts = [`${n('passed')} passed`, `${n('failed')} failed`];
  if (n('error') > 0) parts.push(`${n('error')} errors`);
  if (n('skipped') > 0) parts.push(`${n('skipped')} skipped`);
  return `${cases.length} test cases: ${parts.join(', ')}`;
}
