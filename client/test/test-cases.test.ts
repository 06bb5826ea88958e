import assert from 'node:assert/strict';
import { parseJunit, renderJunit, testCaseSummary } from '../../protocol/src/test-cases.js';

const MOCHA = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="Mocha Tests" time="0.012" tests="3" failures="1">
  <testsuite name="on the DUT" tests="3" failures="1" time="0.012">
    <testcase name="boots" classname="on the DUT" time="0.004"/>
    <testcase name="has &lt;eth0&gt;" classname="on the DUT" time="0.008">
      <failure message="expected 1 to equal 2" type="AssertionError">AssertionError: expected 1 to equal 2
    at Context.it (test.js:3:9)</failure>
    </testcase>
    <testcase name="needs wifi" classname="on the DUT" time="0"><skipped/></testcase>
  </testsuite>
</testsuites>`;

const PYTEST = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1">
<testcase classname="test_dut" name="test_uname" time="0.5"/>
<testcase classname="test_dut" name="test_setup" time="0.1"><error message="fixture 'dut' not found">E fixture</error></testcase>
</testsuite></testsuites>`;

describe('JUnit test-case results', () => {
  it('reads mocha and pytest files: suite, name, status, duration and message', () => {
    assert.deepEqual(parseJunit(MOCHA), [
      { suite: 'on the DUT', name: 'boots', status: 'passed', durationMs: 4, message: '' },
      {
        suite: 'on the DUT',
        name: 'has <eth0>',
        status: 'failed',
        durationMs: 8,
        message: 'expected 1 to equal 2',
      },
      { suite: 'on the DUT', name: 'needs wifi', status: 'skipped', durationMs: 0, message: '' },
    ]);
    const py = parseJunit(PYTEST);
    assert.deepEqual(
      py.map((c) => [c.suite, c.name, c.status, c.message]),
      [
        ['pytest', 'test_uname', 'passed', ''],
        ['pytest', 'test_setup', 'error', "fixture 'dut' not found"],
      ],
    );
  });

  it('reads a bare <testsuite> root and writes back what it read', () => {
    const cases = parseJunit(
      '<testsuite name="s"><testcase name="a" time="1.5"><failure>boom</failure></testcase></testsuite>',
    );
    assert.deepEqual(cases, [{ suite: 's', name: 'a', status: 'failed', durationMs: 1500, message: 'boom' }]);
    const round = parseJunit(renderJunit([...cases, ...parseJunit(MOCHA)]));
    assert.deepEqual(round, [...cases, ...parseJunit(MOCHA)]);
  });

  it('says what is wrong with a file that is not JUnit', () => {
    assert.throws(() => parseJunit('<html><body/></html>', 'out.xml'), /out\.xml is not JUnit XML/);
    assert.throws(() => parseJunit('<testsuite><testcase', 'cut.xml'), /cut\.xml is not well-formed XML/);
  });

  it('sums up cases in one line', () => {
    assert.equal(testCaseSummary(parseJunit(MOCHA)), '3 test cases: 1 passed, 1 failed, 1 skipped');
    assert.equal(testCaseSummary([]), 'no test cases reported');
  });
});
