/**
 * The errors module is the contract every process agrees on: each code is unique, documented,
 * and survives the trip to a gRPC status and back, with or without its code trailer. The
 * README's table of codes must say what the module says.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { ERROR_TABLE_END, ERROR_TABLE_START, errorTableMarkdown } from '../src/error-table.js';
import {
  ERROR_CODE_METADATA_KEY,
  ERROR_CODES,
  type ErrorCode,
  isErrorCode,
  JigletError,
} from '../src/errors.js';
import { codeForStatus, fromGrpcError, toGrpcStatus } from '../src/status.js';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** A client-side error as grpc-js raises it. */
function serviceError(code: status, details: string, trailer?: string): ServiceError {
  const metadata = new Metadata();
  if (trailer !== undefined) metadata.set(ERROR_CODE_METADATA_KEY, trailer);
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

describe('error codes (protocol/src/errors.ts)', () => {
  it('are unique, named JIGLET_E_*, and each is written once in errors.ts', () => {
    const source = readFileSync(new URL('../src/errors.ts', import.meta.url), 'utf8');
    for (const code of CODES) {
      assert.match(code, /^JIGLET_E_[A-Z]+(_[A-Z]+)*$/);
      assert.equal(source.split(`${code}:`).length - 1, 1, `${code} is defined more than once`);
    }
    assert.equal(new Set(CODES).size, CODES.length);
  });

  it('each have a doc string of their own', () => {
    const docs = CODES.map((code) => ERROR_CODES[code].doc);
    for (const [i, doc] of docs.entries())
      assert.ok(doc.trim().length >= 10, `${CODES[i]} has no doc string`);
    assert.equal(new Set(docs).size, docs.length, 'two codes share a doc string');
  });

  it('each map to their gRPC status and back through the code trailer', () => {
    for (const code of CODES) {
      const sent = toGrpcStatus(new JigletError(code, `something ${code}`));
      assert.equal(sent.code, ERROR_CODES[code].grpc, code);
      assert.equal(sent.internal, false);
      const trailer = sent.metadata.get(ERROR_CODE_METADATA_KEY)[0];
      assert.equal(trailer, code);
      const back = fromGrpcError(serviceError(sent.code, sent.details, String(trailer)));
      assert.equal(back.code, code);
      assert.equal(back.message, `something ${code}`);
      assert.equal(back.grpcStatus, ERROR_CODES[code].grpc);
    }
  });

  it('each status a code uses comes back as a code with that status when the trailer is missing', () => {
    for (const code of CODES) {
      const grpc = ERROR_CODES[code].grpc;
      const back = fromGrpcError(serviceError(grpc, 'raised by grpc-js'));
      assert.equal(ERROR_CODES[back.code].grpc, grpc, `${status[grpc]} came back as ${back.code}`);
      assert.equal(codeForStatus(grpc), back.code);
    }
    // ABORTED and ALREADY_EXISTS were missing once and came back as INTERNAL.
    assert.equal(codeForStatus(status.ABORTED), 'JIGLET_E_ABORTED');
    assert.equal(codeForStatus(status.ALREADY_EXISTS), 'JIGLET_E_ALREADY_EXISTS');
    assert.equal(codeForStatus(status.UNKNOWN), 'JIGLET_E_INTERNAL');
    assert.equal(codeForStatus(undefined), 'JIGLET_E_INTERNAL');
  });

  it('an unknown trailer or a thrown non-JigletError is INTERNAL, with no detail for the client', () => {
    assert.equal(isErrorCode('JIGLET_E_NO_SUCH_THING'), false);
    const back = fromGrpcError(serviceError(status.NOT_FOUND, 'gone', 'JIGLET_E_NO_SUCH_THING'));
    assert.equal(back.code, 'JIGLET_E_NOT_FOUND');
    const sent = toGrpcStatus(new Error('secret path /etc/x'));
    assert.equal(sent.code, status.INTERNAL);
    assert.equal(sent.internal, true);
    assert.doesNotMatch(sent.details, /secret/);
  });

  it('are listed in the README exactly as errors.ts has them', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf(ERROR_TABLE_START);
    const end = readme.indexOf(ERROR_TABLE_END);
    assert.ok(
      start >= 0 && end > start,
      `README.md has no ${ERROR_TABLE_START} … ${ERROR_TABLE_END} section`,
    );
    const inReadme = readme.slice(start + ERROR_TABLE_START.length, end).trim();
    assert.equal(
      inReadme,
      errorTableMarkdown(),
      'the README error table disagrees with protocol/src/errors.ts: replace it with the expected text',
    );
  });
});
