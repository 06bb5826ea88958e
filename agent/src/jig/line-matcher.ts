/**
 * Server-side expect: cuts serial output into lines and tests each against an RE2 pattern.
 * RE2 (re2js, linear time) because the pattern comes from a client and runs inside the agent: a
 * backtracking pattern such as `(a+)+$` must not be able to stall every other DUT's console.
 */
import { RE2JS } from 're2js';
import { invalidArgument } from '../../../protocol/src/errors.js';

/** Longest pattern accepted. */
export const MAX_PATTERN_LENGTH = 4096;
/** A line longer than this is tested and cut, so a DUT that never prints "\n" costs bounded memory. */
export const MAX_LINE_CHARS = 16 * 1024;
/** Lines kept to show what was seen when nothing matched. */
export const LAST_LINES = 20;

/** A line that matched. */
export interface LineMatch {
  line: string;
  matched: string;
  groups: string[];
  /** Offset of the record where the line began. */
  lineOffset: number;
  /**
   * Offset just after the matched line (its newline included), or after the bytes pushed when
   * the line is unfinished: where a search for what comes next begins, even when the next line
   * came in the same record.
   */
  endOffset: number;
}

/** Compiles a client's pattern; a pattern that does not compile is INVALID_ARGUMENT with the reason. */
export function compilePattern(pattern: string, ignoreCase: boolean): RE2JS {
  if (pattern === '') throw invalidArgument('a pattern is required');
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw invalidArgument(`the pattern is ${pattern.length} characters long; at most ${MAX_PATTERN_LENGTH}`);
  }
  try {
    return RE2JS.compile(pattern, ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw invalidArgument(
      `the pattern ${JSON.stringify(pattern.slice(0, 200))} does not compile: ${(err as Error).message} (RE2 syntax: no backreferences or lookaround)`,
    );
  }
}

/** Feeds serial bytes, finds the first line (or unfinished last line) that matches. */
export class LineMatcher {
  readonly #re: RE2JS;
  readonly #decoder = new TextDecoder('utf-8');
  #partial = '';
  #partialOffset = -1;
  readonly #last: string[] = [];

  constructor(re: RE2JS) {
    this.#re = re;
  }

  /** The last complete lines seen (and the unfinished one), oldest first. */
  get lastLines(): string[] {
    return this.#partial === '' ? [...this.#last] : [...this.#last, this.#partial].slice(-LAST_LINES);
  }

  /**
   * Adds the bytes of one record that starts at `offset`, whose data starts at `dataOffset` in
   * the log (after the record's header; the same for raw bytes); returns the first match in them.
   * The unfinished last line is tested too, because prompts ("login: ") end without a newline.
   */
  push(data: Buffer, offset: number, dataOffset = offset): LineMatch | undefined {
    const text = this.#decoder.decode(data, { stream: true });
    if (text === '') return undefined;
    if (this.#partialOffset < 0) this.#partialOffset = offset;
    const pieces = (this.#partial + text).split('\n');
    this.#partial = pieces.pop() ?? '';
    // Each complete line ends at a newline byte of `data` (0x0a is never part of a UTF-8
    // sequence, and bytes the decoder holds back are never one), so the k-th line ends after
    // the k-th 0x0a.
    let after = 0;
    for (const raw of pieces) {
      after = data.indexOf(0x0a, after) + 1;
      const found = this.#test(stripCr(raw), this.#partialOffset, dataOffset + after);
      this.#partialOffset = offset;
      if (found) return found;
    }
    const end = dataOffset + data.length;
    if (this.#partial === '') {
      this.#partialOffset = -1;
      return undefined;
    }
    if (this.#partial.length > MAX_LINE_CHARS) {
      const long = this.#partial;
      this.#partial = '';
      this.#partialOffset = -1;
      return this.#test(long, offset, end);
    }
    const found = this.#match(stripCr(this.#partial), this.#partialOffset, end);
    return found;
  }

  #test(line: string, lineOffset: number, endOffset: number): LineMatch | undefined {
    this.#last.push(line);
    if (this.#last.length > LAST_LINES) this.#last.shift();
    return this.#match(line, lineOffset, endOffset);
  }

  #match(line: string, lineOffset: number, endOffset: number): LineMatch | undefined {
    const m = this.#re.matcher(line);
    if (!m.find()) return undefined;
    const groups: string[] = [];
    for (let i = 1; i <= m.groupCount(); i++) groups.push(m.group(i) ?? '');
    return { line, matched: m.group() ?? '', groups, lineOffset, endOffset };
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
