/**
 * A driver's config on the command line: inline JSON, or `@FILE`. The agent passes `@FILE` (a
 * 0600 file in its state directory) so a config holding credentials — a smart plug's password,
 * a PDU's community string — never appears in a job's argv, which every viewer can list.
 */
import { readFileSync } from 'node:fs';

/** Parses `text` (JSON or @FILE); throws a message naming `flag` when it is neither. */
export function readConfigArg(flag: string, text: string): unknown {
  let json = text;
  if (text.startsWith('@')) {
    try {
      json = readFileSync(text.slice(1), 'utf8');
    } catch (err) {
      throw new Error(`${flag}: cannot read ${text.slice(1)} (${(err as NodeJS.ErrnoException).code})`);
    }
  }
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new Error(`${flag} is not JSON: ${(err as Error).message}`);
  }
}
