/**
 * The control protocol of qemu-host, on its unix socket. A client sends one request per line:
 *   power on | power off | power status | mux host | mux dut | mux status
 * and gets one JSON line per request, in order:
 *   {"ok":true,"power":"on"|"off","mux":"host"|"dut"}          the state after the request
 *   {"ok":false,"code":"JIGLET_E_…","message":"…"}              it was refused or failed
 * Several requests may share a connection; qemu-host runs all requests one at a time.
 * `socat - UNIX-CONNECT:SOCKET` is enough to drive it by hand.
 */
import { createConnection } from 'node:net';
import { z } from 'zod';
import { invalidArgument, isErrorCode, JigletError } from '../../../protocol/src/errors.js';
import { withDeadline } from '../deadline.js';

/** Longest request line a server accepts (requests are a dozen bytes). */
export const MAX_REQUEST_LINE = 256;

/** One request to qemu-host. */
export type QemuHostRequest =
  | { kind: 'power'; action: 'on' | 'off' | 'status' }
  | { kind: 'mux'; action: 'host' | 'dut' | 'status' };

/** The DUT's state, as every successful answer carries it. */
export interface QemuHostState {
  /** Whether QEMU runs. */
  power: 'on' | 'off';
  /** Where the disk image is connected. */
  mux: 'host' | 'dut';
}

const ACTIONS = {
  power: ['on', 'off', 'status'],
  mux: ['host', 'dut', 'status'],
} as const satisfies Record<QemuHostRequest['kind'], readonly string[]>;

/** Parses one request line; anything else is JIGLET_E_INVALID_ARGUMENT. */
export function parseRequest(line: string): QemuHostRequest {
  const words = line.trim().split(/\s+/);
  const [kind, action] = words;
  if (words.length === 2 && (kind === 'power' || kind === 'mux')) {
    const actions: readonly string[] = ACTIONS[kind];
    if (action !== undefined && actions.includes(action)) return { kind, action } as QemuHostRequest;
  }
  throw invalidArgument(
    `expected "power on|off|status" or "mux host|dut|status", got ${JSON.stringify(line.slice(0, 80))}`,
  );
}

/** The answer line carrying the state after a request. */
export function formatState({ power, mux }: QemuHostState): string {
  return `${JSON.stringify({ ok: true, power, mux })}\n`;
}

/** The answer line for a refused or failed request (a non-jiglet error is JIGLET_E_INTERNAL). */
export function formatError(error: unknown): string {
  const code = error instanceof JigletError ? error.code : 'JIGLET_E_INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return `${JSON.stringify({ ok: false, code, message })}\n`;
}

const replySchema = z.union([
  z.object({ ok: z.literal(true), power: z.enum(['on', 'off']), mux: z.enum(['host', 'dut']) }),
  z.object({ ok: z.literal(false), code: z.string(), message: z.string() }),
]);

/** Where a qemu-host listens and how long one request may take. */
export interface QemuHostTarget {
  /** The control socket's path. */
  socket: string;
  /** Deadline of one request (connect, switch, answer). */
  timeoutMs: number;
  /** Names the caller in errors, e.g. `qemu power of qdut-1`. */
  what: string;
}

/** Sends one request and resolves with the state qemu-host answers; refusals reject with their code. */
export function qemuHostRequest(target: QemuHostTarget, request: string): Promise<QemuHostState> {
  const what = `${target.what} (${target.socket})`;
  return withDeadline(target.timeoutMs, `${what}: ${request}`, (signal) => {
    return new Promise<QemuHostState>((resolve, reject) => {
      const socket = createConnection({ path: target.socket });
      let buffer = '';
      let settled = false;
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        socket.destroy();
        settle();
      };
      const onAbort = (): void => finish(() => reject(signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(`${request}\n`));
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        const nl = buffer.indexOf('\n');
        if (nl >= 0) finish(() => settleReply(buffer.slice(0, nl), what, resolve, reject));
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        const hint =
          error.code === 'ENOENT' || error.code === 'ECONNREFUSED' ? 'qemu-host is not running: ' : '';
        finish(() => reject(new JigletError('JIGLET_E_UNAVAILABLE', `${what}: ${hint}${error.message}`)));
      });
      socket.on('close', () =>
        finish(() => reject(new JigletError('JIGLET_E_UNAVAILABLE', `${what}: closed without an answer`))),
      );
    });
  });
}

function settleReply(
  line: string,
  what: string,
  resolve: (state: QemuHostState) => void,
  reject: (error: Error) => void,
): void {
  let parsed: z.infer<typeof replySchema>;
  try {
    parsed = replySchema.parse(JSON.parse(line));
  } catch {
    reject(
      new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `${what}: unreadable answer ${JSON.stringify(line.slice(0, 200))}`,
      ),
    );
    return;
  }
  if (parsed.ok) resolve({ power: parsed.power, mux: parsed.mux });
  else
    reject(
      new JigletError(
        isErrorCode(parsed.code) ? parsed.code : 'JIGLET_E_INTERNAL',
        `${what}: ${parsed.message}`,
      ),
    );
}
