/**
 * Where a match leaves a search (line-matcher.ts, LineMatch.endOffset): just after the matched
 * line's newline, counted in bytes of the record's data, whatever came before it in the record
 * (several lines, multi-byte characters, a line begun in an earlier record).
 */
import assert from 'node:assert/strict';
import { compilePattern, LineMatcher } from '../src/jig/line-matcher.js';

/** A record at `offset` whose header takes `header` bytes before its data. */
const record = (offset: number, header: number, text: string) => ({
  data: Buffer.from(text, 'utf8'),
  offset,
  dataOffset: offset + header,
});

describe('line matcher offsets', () => {
  it('ends a match after its own line, not after the record', () => {
    const m = new LineMatcher(compilePattern('^second$', false));
    const r = record(1000, 12, 'first\r\nsecond\r\nthird');
    const found = m.push(r.data, r.offset, r.dataOffset);
    assert.equal(found?.line, 'second');
    assert.equal(found?.endOffset, r.dataOffset + Buffer.byteLength('first\r\nsecond\r\n'));
  });

  it('counts bytes, not characters, before the line', () => {
    const m = new LineMatcher(compilePattern('^b$', false));
    const r = record(0, 10, 'äöü€\nb\nc');
    assert.equal(
      m.push(r.data, r.offset, r.dataOffset)?.endOffset,
      r.dataOffset + Buffer.byteLength('äöü€\nb\n'),
    );
  });

  it('ends a line begun in an earlier record in the record that finishes it', () => {
    const m = new LineMatcher(compilePattern('^hello world$', false));
    const a = record(0, 8, 'hello ');
    const b = record(a.dataOffset + a.data.length, 8, 'world\r\nnext');
    assert.equal(m.push(a.data, a.offset, a.dataOffset), undefined);
    const found = m.push(b.data, b.offset, b.dataOffset);
    assert.equal(found?.lineOffset, a.offset);
    assert.equal(found?.endOffset, b.dataOffset + Buffer.byteLength('world\r\n'));
  });

  it('ends an unfinished line (a prompt) where the bytes end', () => {
    const m = new LineMatcher(compilePattern('login: $', false));
    const r = record(500, 9, 'boot done\r\nvdut login: ');
    assert.equal(m.push(r.data, r.offset, r.dataOffset)?.endOffset, r.dataOffset + r.data.length);
  });

  it('takes raw bytes as their own data when no header offset is given', () => {
    const m = new LineMatcher(compilePattern('^ready', false));
    assert.equal(m.push(Buffer.from('x\nready 1\nmore'), 40)?.endOffset, 40 + 'x\nready 1\n'.length);
  });
});
