/**
 * Streaming decompression of an image: the image is never whole in memory or on disk (Leviathan
 * gunzips to disk first). Each format is an async generator, so the decompressor only runs when
 * the writer asks for the next chunk: a pending write pauses decompression and file reads.
 *
 * Where Debian's tools are installed the decoding runs in a child process (`xz -dc -T0`,
 * `zstd -dc`; gzip stays with zlib, which is as fast): native code, multi-threaded for multi-block .xz, and on
 * another core than the agent's hashing and writing. Backpressure is the pipes': the writer not
 * reading stops the tool, which stops reading the image file. Without the tool (or with
 * `JIGLET_FLASH_DECODER=builtin`) the in-process decoders below are used: zlib, the WASM
 * xz-decompress, fzstd.
 * Damaged input rejects with JIGLET_E_INVALID_ARGUMENT "<name> is truncated or corrupt: …";
 * read errors of the image file itself pass through unchanged.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { ReadableStream, type ReadableStreamReadResult } from 'node:stream/web';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import xzDecompress from 'xz-decompress';
import { JigletError } from '../../../protocol/src/errors.js';
import type { ImageFormat } from './image-format.js';
import { Xxh64 } from './xxhash64.js';
import { type ScanResult, ZstdFrameScanner } from './zstd-frames.js';

const { XzReadableStream } = xzDecompress;

/**
 * Compressed bytes handed to fzstd at a time. fzstd decodes every block a push completes at
 * once; a zstd run of zeros is ~4 bytes per 128 KiB block, so a small piece bounds the memory one
 * push can produce (1 KiB → at most 32 MiB) while the writer applies backpressure between pieces.
 */
const ZSTD_PIECE_BYTES = 1024;

/** zlib's output chunk size: its 16 KiB default makes gunzip ~3x slower through the writer. */
const GUNZIP_CHUNK_BYTES = 1024 * 1024;

/** xz-embedded's return codes (xz.h), for messages. */
const XZ_ERRORS: Record<string, string> = {
  '2': 'unsupported integrity check',
  '3': 'out of memory',
  '4': 'memory limit exceeded',
  '5': 'not in xz format',
  '6': 'unsupported compression options',
  '7': 'compressed data is corrupt',
  '8': 'unexpected end of input',
};

/** Makes the "truncated or corrupt" error for the image `name`. */
function corrupt(
  name: string,
  err: unknown,
  detail = err instanceof Error ? err.message : String(err),
): JigletError {
  return new JigletError('JIGLET_E_INVALID_ARGUMENT', `${name} is truncated or corrupt: ${detail}`, {
    cause: err,
  });
}

/** Remembers errors of the image file itself, so they are not reported as a corrupt image. */
function sourceErrors(source: Readable): { isSourceError(err: unknown): boolean } {
  const seen = new Set<unknown>();
  source.on('error', (err) => seen.add(err));
  return { isSourceError: (err) => seen.has(err) };
}

async function* gunzip(source: Readable, name: string): AsyncGenerator<Buffer> {
  const errors = sourceErrors(source);
  const inflate = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
  source.on('error', (err) => inflate.destroy(err));
  source.pipe(inflate);
  try {
    for await (const chunk of inflate) yield chunk as Buffer;
  } catch (err) {
    throw errors.isSourceError(err) ? err : corrupt(name, err);
  } finally {
    source.destroy();
    inflate.destroy();
  }
}

/** A pull-only web stream over `source`: it reads the file only when the xz decoder asks. */
function pullStream(source: Readable): ReadableStream<Uint8Array> {
  const chunks = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value as Buffer);
      },
      async cancel() {
        await chunks.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

/** What went wrong in xz-decompress, in words. */
function xzErrorDetail(err: unknown): string {
  // It reads past the end of its input when the file stops before the xz stream does.
  if (err instanceof TypeError) return 'unexpected end of input';
  const message = err instanceof Error ? err.message : String(err);
  const code = /get_next_output failed with error code (\d+)/.exec(message)?.[1];
  return code === undefined ? message : (XZ_ERRORS[code] ?? `xz error ${code}`);
}

async function* unxz(source: Readable, name: string): AsyncGenerator<Buffer> {
  const errors = sourceErrors(source);
  // xz-decompress serialises its WASM contexts process-wide and frees one only when its stream
  // ends, fails or is cancelled: every path below must do one of the three.
  const reader = new XzReadableStream(pullStream(source)).getReader();
  let finished = false;
  try {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        finished = true; // a failed stream has freed its context already
        throw errors.isSourceError(err) ? err : corrupt(name, err, xzErrorDetail(err));
      }
      if (next.done) {
        finished = true;
        return;
      }
      const { buffer, byteOffset, byteLength } = next.value;
      if (byteLength > 0) yield Buffer.from(buffer, byteOffset, byteLength);
    }
  } finally {
    if (!finished) await reader.cancel();
    source.destroy();
  }
}

async function* unzstd(source: Readable, name: string): AsyncGenerator<Buffer> {
  const out: Uint8Array[] = [];
  let frameHash = new Xxh64();
  const decoder = new ZstdDecompress((data) => {
    frameHash.update(data);
    out.push(data);
  });
  const frames = new ZstdFrameScanner();
  const push = (piece: Uint8Array, final: boolean): void => {
    try {
      decoder.push(piece, final);
    } catch (err) {
      throw corrupt(name, err);
    }
  };
  try {
    for await (const chunk of source) {
      const bytes = chunk as Buffer;
      for (let at = 0; at < bytes.length; ) {
        // Never past a frame end, so all output of a push belongs to one frame.
        let scan: ScanResult;
        try {
          scan = frames.scan(bytes.subarray(0, Math.min(at + ZSTD_PIECE_BYTES, bytes.length)), at);
        } catch (err) {
          throw corrupt(name, err);
        }
        push(bytes.subarray(at, scan.end), false);
        at = scan.end;
        // fzstd hands out freshly allocated blocks, so they can be yielded as they are.
        for (let data = out.shift(); data !== undefined; data = out.shift()) {
          if (data.byteLength > 0) yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        }
        const checksum = scan.frameEnd?.checksum;
        if (checksum !== undefined && frameHash.digestLow32() !== checksum) {
          throw corrupt(name, undefined, 'zstd content checksum mismatch');
        }
        if (scan.frameEnd) frameHash = new Xxh64();
      }
    }
    if (!frames.atFrameBoundary) throw corrupt(name, undefined, 'unexpected end of input');
    push(new Uint8Array(0), true);
    for (const data of out) {
      if (data.byteLength > 0) yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }
  } finally {
    source.destroy();
  }
}

/** A decompressing command: the program's path and its arguments (stdin to stdout). */
export interface DecoderTool {
  /** Absolute path of the program. */
  path: string;
  /** Arguments that make it decompress stdin to stdout. */
  args: string[];
}

/** The tools tried for each compressed format, best first. */
const TOOLS: Record<Exclude<ImageFormat, 'raw'>, ReadonlyArray<readonly [string, string[]]>> = {
  // -T0: one thread per core on .xz files with several blocks (xz -T, pixz); one otherwise.
  xz: [['xz', ['-dc', '-T0']]],
  // None: zlib in Node's thread pool is as fast as `pigz -dc` here (a flash measured no gain)
  // and three times as fast as `gzip -dc`.
  gzip: [],
  zstd: [['zstd', ['-dc']]],
};

const found = new Map<string, string | null>();

/** The absolute path of `program` on PATH, or null (cached per PATH). */
function which(program: string): string | null {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((dir) => dir !== '');
  const key = `${program}\0${dirs.join('\0')}`;
  let hit = found.get(key);
  if (hit === undefined) {
    hit = null;
    for (const dir of dirs) {
      const candidate = path.join(dir, program);
      try {
        accessSync(candidate, fsConstants.X_OK);
        hit = candidate;
        break;
      } catch {
        // not here
      }
    }
    found.set(key, hit);
  }
  return hit;
}

/** Which decoders to use: `auto` prefers an installed tool, `builtin` never runs one. */
export type DecoderChoice = 'auto' | 'builtin';

/** The decoder choice from JIGLET_FLASH_DECODER (`builtin` or unset/`auto`). */
function decoderChoiceFromEnv(): DecoderChoice {
  return process.env.JIGLET_FLASH_DECODER === 'builtin' ? 'builtin' : 'auto';
}

/** The external tool that would decompress `format`, or null when the built-in decoder is used. */
export function decoderTool(format: ImageFormat, choice = decoderChoiceFromEnv()): DecoderTool | null {
  if (format === 'raw' || choice === 'builtin') return null;
  for (const [program, args] of TOOLS[format]) {
    const at = which(program);
    if (at !== null) return { path: at, args };
  }
  return null;
}

/**
 * Decoded bytes read ahead of the writer. A pipe holds only 64 KiB: without this the tool stalls
 * whenever the agent's thread is busy (hashing, planning a buffer) instead of decoding on.
 */
const TOOL_READ_AHEAD_BYTES = 8 * 1024 * 1024;

/** Longest stderr kept from a decoding tool: its message is one line. */
const STDERR_KEEP_CHARS = 4096;

/**
 * The gist of a tool's complaint: "xz: (stdin): Unexpected end of input" → "unexpected end of
 * input", "gzip: stdin: unexpected end of file" → "unexpected end of file".
 */
function toolErrorDetail(stderr: string): string | undefined {
  const line = stderr
    .split('\n')
    .map((text) => text.trim())
    .filter((text) => text !== '')
    .at(-1);
  if (line === undefined) return undefined;
  if (/doesn't match checksum|checksum mismatch/i.test(line)) return 'zstd content checksum mismatch';
  // pigz: "skipping: <stdin>: corrupted -- incomplete deflate data" is gzip's cut-short file.
  if (/incomplete deflate data/.test(line)) return 'unexpected end of file';
  const text = line
    .replace(/^(?:xz|pigz|gzip|zstd): /, '')
    .replace(/^skipping: /, '')
    .replace(/^(?:\(stdin\)|stdin|<stdin>|\/\*stdin\*\\)\s?: /, '')
    .replace(/^(?:Read|Decoding) error \(\d+\)\s?: /, '')
    .replace(/^zstd: /, '')
    .trim();
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** Decompresses through `tool` in a child process; see the module comment. */
async function* viaTool(tool: DecoderTool, source: Readable, name: string): AsyncGenerator<Buffer> {
  const program = path.basename(tool.path);
  const child = spawn(tool.path, tool.args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < STDERR_KEEP_CHARS) stderr += text;
  });
  let spawnError: Error | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (err) => {
      spawnError = err;
      resolve({ code: null, signal: null });
    });
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  // EPIPE when the tool stops reading early (damaged input): its exit status says why.
  child.stdin.on('error', () => {});
  let sourceError: unknown;
  let sourceFailed = false;
  source.on('error', (err) => {
    sourceFailed = true;
    sourceError = err;
    child.kill('SIGKILL');
  });
  source.pipe(child.stdin);
  const ahead = new PassThrough({ highWaterMark: TOOL_READ_AHEAD_BYTES });
  child.stdout.pipe(ahead);
  let finished = false;
  try {
    for await (const chunk of ahead) yield chunk as Buffer;
    const { code, signal } = await exited;
    if (sourceFailed) throw sourceError;
    if (spawnError !== undefined) {
      throw new JigletError('JIGLET_E_DRIVER_FAILED', `cannot run ${tool.path}: ${spawnError.message}`, {
        cause: spawnError,
      });
    }
    if (signal !== null) {
      // Killed from outside (out of memory, an operator): nothing says the image is bad.
      throw new JigletError('JIGLET_E_DRIVER_FAILED', `${program} decoding ${name} was killed by ${signal}`);
    }
    if (code !== 0) {
      throw corrupt(name, undefined, toolErrorDetail(stderr) ?? `${program} exited with ${code}`);
    }
    finished = true;
  } catch (err) {
    // A failed source kills the tool, which can end its output early or look like damage.
    if (sourceFailed && err !== sourceError) throw sourceError;
    throw err;
  } finally {
    source.unpipe(child.stdin);
    source.destroy();
    if (!finished && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child.stdout.unpipe(ahead);
    ahead.destroy();
    child.stdout.destroy();
    child.stdin.destroy();
  }
}

/** Options of `decompressStream`. */
export interface DecompressOptions {
  /** `auto` (default: JIGLET_FLASH_DECODER, else an installed tool first) or `builtin`. */
  decoder?: DecoderChoice;
}

/**
 * The decompressed content of `source` (the image file's bytes) as a stream. `name` is the file's
 * name for messages. Destroying the returned stream stops decompression and closes `source`.
 */
export function decompressStream(
  format: ImageFormat,
  source: Readable,
  name: string,
  options: DecompressOptions = {},
): Readable {
  const tool = decoderTool(format, options.decoder ?? decoderChoiceFromEnv());
  if (tool !== null) return Readable.from(viaTool(tool, source, name), { objectMode: false });
  switch (format) {
    case 'raw':
      return source;
    case 'gzip':
      return Readable.from(gunzip(source, name), { objectMode: false });
    case 'xz':
      return Readable.from(unxz(source, name), { objectMode: false });
    case 'zstd':
      return Readable.from(unzstd(source, name), { objectMode: false });
  }
}
