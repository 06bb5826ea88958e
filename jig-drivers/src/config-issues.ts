/**
 * Turns zod validation issues into lines a person editing a jig description can act on:
 * `duts[1].power.url: expected a URL, got "x"` — the key path, what was expected, what was found.
 */
import type { z } from 'zod';
import { invalidArgument } from '../../protocol/src/errors.js';

/** A key path into a parsed document, e.g. `['duts', 1, 'power', 'url']`. */
export type KeyPath = readonly PropertyKey[];

/** The result of checking a value: the parsed data, or every problem found. */
export type CheckResult<T> = { ok: true; data: T } | { ok: false; problems: string[] };

const PLAIN_KEY = /^[A-Za-z_][\w-]*$/;

/** Formats a key path the way people write it: `duts[1].power.url`. */
export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && PLAIN_KEY.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(top level)' : out;
}

/** A short rendering of a value found in a document, for "got …". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
};

// Our wording for zod's issue codes; a message set on a schema itself still wins over this map.
const errorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type':
      return `${issue.input === undefined ? 'missing, ' : ''}expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${JSON.stringify(issue.values[0])}`
        : `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
      if (issue.origin === 'string') return `expected a length ${op} ${bound} characters`;
      if (issue.origin === 'array') return `expected a list with ${op} ${bound} entries`;
      return `expected a number ${op} ${bound}`;
    }
    case 'invalid_format':
      return issue.format === 'regex'
        ? `expected text matching ${issue.pattern}`
        : `expected a ${issue.format}`;
    default:
      return undefined;
  }
};

/** Formats one issue as `path: expected …, got …` lines (an unknown-keys issue gives one line per key). */
function formatIssue(issue: z.core.$ZodIssue, base: KeyPath): string[] {
  const path = [...base, ...issue.path];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${formatKeyPath([...path, key])}: unknown key`);
  }
  // A refinement over a whole mapping ("exactly one of …") gains nothing from "got a mapping".
  const whole = issue.code === 'custom' && typeof issue.input === 'object' && issue.input !== null;
  const found = issue.input !== undefined && !whole && !issue.message.includes(', got ');
  return [`${formatKeyPath(path)}: ${issue.message}${found ? `, got ${describeValue(issue.input)}` : ''}`];
}

/** Validates `value` against `schema`, reporting every problem with its key path under `base`. */
export function checkAgainst<S extends z.ZodType>(
  schema: S,
  value: unknown,
  base: KeyPath = [],
): CheckResult<z.output<S>> {
  const result = schema.safeParse(value, { reportInput: true, error: errorMap });
  if (result.success) return { ok: true, data: result.data };
  return { ok: false, problems: result.error.issues.flatMap((issue) => formatIssue(issue, base)) };
}

/** Like `checkAgainst`, but throws JIGLET_E_INVALID_ARGUMENT naming `where` and every problem. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
  base: KeyPath = [],
): z.output<S> {
  const result = checkAgainst(schema, value, base);
  if (result.ok) return result.data;
  throw invalidArgument(result.problems.map((problem) => `${where}: ${problem}`).join('\n'));
}
