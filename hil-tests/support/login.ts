/** Logging in on a DUT's console the way a lab script does: type, then expect on the agent. */
import type { ConsoleSession } from '../../client/src/jig-client.js';
import type { HilTarget } from './target.js';

/** Seconds a DUT gets for each step (boot to prompt, command to output). */
export const STEP_TIMEOUT_MS = 60_000;

/**
 * Types a line and waits for `pattern` in what the DUT prints after it; resolves with the offset
 * after the match, for the next step to search from.
 */
export async function sendAndExpect(
  target: HilTarget,
  session: ConsoleSession,
  from: number,
  text: string,
  pattern: string,
): Promise<{ line: string; next: number }> {
  await session.write(`${text}\r`);
  const match = await target.operator.jig.expect(target.dut, pattern, {
    offset: from,
    timeoutMs: STEP_TIMEOUT_MS,
  });
  return { line: match.line, next: match.nextOffset };
}

/** Waits for the login prompt after `from`, logs in, and resolves at the shell prompt. */
export async function logIn(target: HilTarget, session: ConsoleSession, from: number): Promise<number> {
  const { jig } = target.operator;
  const { login } = target;
  const prompt = await jig.expect(target.dut, login.loginPrompt, {
    offset: from,
    timeoutMs: STEP_TIMEOUT_MS,
  });
  const password = await sendAndExpect(target, session, prompt.nextOffset, login.user, login.passwordPrompt);
  const shell = await sendAndExpect(target, session, password.next, login.password, login.shellPrompt);
  return shell.next;
}
