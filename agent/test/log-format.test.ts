/**
 * The agent's log as its readers get it: readable lines for a person at a terminal (or with
 * `--log-format pretty`), pino's JSON lines for everything else.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultLogFormat, prettyLine } from '../../agent/src/log-format.js';
import { startJigletProcess } from '../../fixtures/test-support/jiglet-process.js';
import { testPki } from '../../fixtures/test-support/test-pki.js';

describe('agent log format', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'jiglet-logfmt-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes one readable line per record, fields as key=value, an error with its stack', () => {
    const time = new Date(2026, 11, 7, 12, 0, 1, 23).getTime();
    const line = JSON.stringify({
      level: 30,
      time,
      pid: 7,
      msg: 'job ended',
      job: 'a1',
      code: 0,
      note: 'two words',
    });
    assert.equal(prettyLine(line, false), '12:00:01.023 INFO  job ended job=a1 code=0 note="two words"\n');
    const err = { type: 'Error', message: 'boom', stack: 'Error: boom\n    at f (x.js:1:2)' };
    const failed = JSON.stringify({ level: 50, time, msg: 'stop failed', err });
    assert.equal(prettyLine(failed, false), '12:00:01.023 ERROR stop failed err=boom\n    at f (x.js:1:2)\n');
    assert.equal(prettyLine('not json', false), 'not json\n');
  });

  it('is readable on a terminal and JSON elsewhere unless asked', () => {
    assert.equal(defaultLogFormat({ isTTY: true }), 'pretty');
    assert.equal(defaultLogFormat({ isTTY: false }), 'json');
    assert.equal(defaultLogFormat({}), 'json');
  });

  it('jiglet serve --log-format pretty logs readable lines; into a pipe it logs JSON', async () => {
    const pki = await testPki();
    const pretty = await startJigletProcess({
      stateDir: join(dir, 'pretty'),
      tlsDir: pki.jigDir,
      logLevel: 'info',
      stderr: 'capture',
      extraArgs: ['--log-format', 'pretty'],
    });
    await pretty.stop();
    assert.match(
      pretty.stderr(),
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}gRPC server listening \(mutual TLS 1\.3\) listen=127\.0\.0\.1:0 port=\d+$/m,
    );
    assert.doesNotMatch(pretty.stderr(), /^\{/m);
    const json = await startJigletProcess({
      stateDir: join(dir, 'json'),
      tlsDir: pki.jigDir,
      logLevel: 'info',
      stderr: 'capture',
    });
    await json.stop();
    const lines = json.stderr().trim().split('\n');
    assert.ok(lines.length > 0);
    for (const l of lines) assert.equal(typeof (JSON.parse(l) as { msg: string }).msg, 'string', l);
  });
});
