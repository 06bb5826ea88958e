/**
 * The wire protocol of `exec` over a serial console: the one line typed to the DUT's shell, and
 * the parser that finds the command's output and exit code in what comes back.
 *
 * One line, one round trip: `printf` prints a begin marker, the command runs in a subshell with
 * stdin from /dev/null (so `exit 3` or `cd` never touch the login shell, and a command that reads
 * stdin does not hang), then `printf` prints an end marker with `$?`. The markers carry a random
 * nonce per call, and the typed line only ever holds them split ("JXB" and the nonce are separate
 * printf arguments, as labgrid splits its marker), so the echo of the line — whether the tty echoes
 * it, wraps it at 80 columns or not at all — can never be taken for a marker, and output of an
 * earlier command can never be taken for this one's.
 */
import { randomBytes } from 'node:crypto';
import { JigletError } from '../../../protocol/src/errors.js';

/** Most output bytes an exec returns; past it the call fails with RESOURCE_EXHAUSTED. */
export const MAX_EXEC_OUTPUT = 16 * 1024 * 1024;
/** Most kernel lines kept per call (they are reported, never the reason a call fails). */
const MAX_KERNEL_LINES = 1000;
/** A kernel console line (printk with timestamps) at the start of a line: `[   12.345678] ...`. */
const PRINTK = /^\[\s*\d+\.\d+\] /;
/**
 * A kernel line that cut into a line the command was printing: the console prints it where the
 * cursor is, and its own CR LF ends it. Only the full `[%5lu.%06lu] ` stamp counts here, so
 * ordinary brackets in output are left alone.
 */
const PRINTK_INSIDE = /\[ *\d+\.\d{6}\] [^\r\n]*\r?\n$/;

/** A fresh nonce: 12 hex digits, so a marker cannot collide with a past call's by chance. */
export function newNonce(): string {
  return randomBytes(6).toString('hex');
}

/** Quotes one word for a POSIX shell: single quotes, a `'` inside written as `'\''`. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A shell command from argv: each word quoted, so the DUT's shell runs exactly that program. */
export function commandOfArgv(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/**
 * The line to type for `command` (ends with "\n"). `stdinNull` = the command's stdin is
 * /dev/null; otherwise it is the console. The command goes through `eval` of a quoted string, so
 * a comment or a syntax error in it stays inside the subshell instead of leaving the login shell
 * waiting for more input.
 */
export function execLine(nonce: string, command: string, stdinNull: boolean): string {
  const redirect = stdinNull ? ' </dev/null' : '';
  return `printf '%s_%s\\n' JXB ${nonce}; ( eval ${shellQuote(command)} )${redirect}; printf '\\n%s_%s:%d\\n' JXE ${nonce} $?\n`;
}

/** The line that proves the shell reads commands again (after Ctrl-C, or a login). */
export function syncLine(nonce: string): string {
  return `printf '%s_%s\\n' JXS ${nonce}\n`;
}

/** The marker a sync line prints. */
export function syncMarker(nonce: string): string {
  return `JXS_${nonce}`;
}

/** What a finished exec found. */
export interface ExecOutput {
  exitCode: number;
  stdout: Buffer;
  /** Kernel lines that arrived during the command, kept out of stdout (without CR LF). */
  kernelLines: string[];
}

/**
 * Reads the DUT's serial output for one exec call. Feed it every byte after the line was typed;
 * `done` is set once the end marker arrived. Line endings: when the begin marker comes back as
 * "\r\n", the tty adds a CR before each LF (onlcr), so each line's "\r\n" is given back as the
 * "\n" the command printed; bytes are otherwise passed through exactly.
 */
export class ExecParser {
  readonly #begin: string;
  readonly #end: RegExp;
  readonly #keepKernelLines: boolean;
  #started = false;
  #crlf = false;
  /** Bytes not yet cut into lines (latin1: one char per byte). */
  #pending = '';
  /** The start of a line a kernel line cut into; the rest of it follows the kernel line. */
  #carry = '';
  readonly #out: Buffer[] = [];
  #outBytes = 0;
  readonly #kernel: string[] = [];
  #result: ExecOutput | undefined;

  constructor(nonce: string, opts: { keepKernelLines?: boolean } = {}) {
    this.#begin = `JXB_${nonce}`;
    this.#end = new RegExp(`^JXE_${nonce}:(\\d+)$`);
    this.#keepKernelLines = opts.keepKernelLines ?? false;
  }

  /** Whether the begin marker arrived (the command is running). */
  get started(): boolean {
    return this.#started;
  }

  /** The result once the end marker arrived. */
  get result(): ExecOutput | undefined {
    return this.#result;
  }

  /** The output so far, for a command that did not finish. */
  sofar(): ExecOutput {
    return { exitCode: -1, stdout: Buffer.concat(this.#out), kernelLines: this.#kernel };
  }

  /** Takes serial bytes; returns the result once complete. Throws RESOURCE_EXHAUSTED past the limit. */
  push(data: Buffer): ExecOutput | undefined {
    if (this.#result) return this.#result;
    this.#pending += data.toString('latin1');
    if (!this.#started) {
      const at = this.#pending.indexOf(this.#begin);
      if (at < 0) {
        // Keep only what could be the start of a marker split across reads.
        if (this.#pending.length > this.#begin.length)
          this.#pending = this.#pending.slice(-this.#begin.length);
        return undefined;
      }
      const nl = this.#pending.indexOf('\n', at);
      if (nl < 0) return undefined;
      this.#crlf = this.#pending[nl - 1] === '\r';
      this.#started = true;
      this.#pending = this.#pending.slice(nl + 1);
    }
    let start = 0;
    for (;;) {
      const nl = this.#pending.indexOf('\n', start);
      if (nl < 0) break;
      const line = this.#pending.slice(start, nl + 1);
      start = nl + 1;
      if (this.#line(line)) return this.#result;
    }
    this.#pending = this.#pending.slice(start);
    if (this.#outBytes + this.#pending.length > MAX_EXEC_OUTPUT) this.#tooMuch();
    return undefined;
  }

  /** One complete line with its "\n"; true when it was the end marker. */
  #line(raw: string): boolean {
    if (!this.#keepKernelLines) {
      const inside = PRINTK_INSIDE.exec(raw);
      if (inside && inside.index > 0) {
        this.#keepKernel(inside[0].replace(/\r?\n$/, ''));
        this.#carry += raw.slice(0, inside.index);
        return false;
      }
      // More kernel lines right after one that cut in: still the kernel's, the cut line goes on after.
      if (this.#carry !== '' && PRINTK.test(raw)) {
        this.#keepKernel(raw.replace(/\r?\n$/, ''));
        return false;
      }
    }
    const line = this.#carry + raw;
    this.#carry = '';
    const bare = line.endsWith('\r\n') ? line.slice(0, -2) : line.slice(0, -1);
    const end = this.#end.exec(bare);
    if (end) {
      let stdout = Buffer.concat(this.#out);
      // The end marker's printf starts with its own "\n": the one before the marker is ours.
      if (stdout.length > 0 && stdout[stdout.length - 1] === 0x0a) stdout = stdout.subarray(0, -1);
      this.#result = { exitCode: Number(end[1]), stdout, kernelLines: this.#kernel };
      return true;
    }
    if (!this.#keepKernelLines && PRINTK.test(bare)) {
      this.#keepKernel(bare);
      return false;
    }
    const text = this.#crlf && line.endsWith('\r\n') ? `${line.slice(0, -2)}\n` : line;
    const bytes = Buffer.from(text, 'latin1');
    this.#outBytes += bytes.length;
    if (this.#outBytes > MAX_EXEC_OUTPUT) this.#tooMuch();
    this.#out.push(bytes);
    return false;
  }

  #keepKernel(line: string): void {
    if (this.#kernel.length < MAX_KERNEL_LINES) this.#kernel.push(line);
  }

  #tooMuch(): never {
    throw new JigletError(
      'JIGLET_E_RESOURCE_EXHAUSTED',
      `the command printed more than ${MAX_EXEC_OUTPUT / (1024 * 1024)} MiB; exec is for command output: copy large files with a flash image or a job instead, or pipe through head/gzip on the DUT`,
    );
  }
}
