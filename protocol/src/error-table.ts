/**
 * The README's table of error codes, made from ERROR_CODES: a test holds the README against it,
 * so the two cannot drift apart.
 */
import { Status as status } from '@grpc/grpc-js/build/src/constants.js';
import { ERROR_CODES, type ErrorCode } from './errors.js';

/** The line before the generated table in README.md. */
export const ERROR_TABLE_START = '<!-- error-codes: generated from protocol/src/errors.ts -->';
/** The line after it. */
export const ERROR_TABLE_END = '<!-- /error-codes -->';

/** The Markdown table: one row per code, in the order errors.ts lists them. */
export function errorTableMarkdown(): string {
  const rows = (Object.entries(ERROR_CODES) as [ErrorCode, { grpc: status; doc: string }][]).map(
    ([code, { grpc, doc }]) => `| \`${code}\` | ${status[grpc]} | ${doc} |`,
  );
  return ['| code | gRPC status | meaning |', '|---|---|---|', ...rows].join('\n');
}
