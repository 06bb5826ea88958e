/**
 * jiglet.v1.WebService: tickets for the browser console. Any role that may read the jig gets one
 * (a viewer's session is read-only); whether a session may type is decided by the web console at
 * each keystroke, from the role and the DUT's lease, not here.
 */
import type { Logger } from 'pino';
import type { WebServiceServer } from '../../../protocol/gen/jiglet/v1/web.js';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import { identityOf } from '../auth/auth-interceptor.js';
import type { JigRuntime } from '../jig/jig-runtime.js';
import type { WebConsole } from '../web/web-console.js';
import { unary } from './respond.js';

/** Builds the WebService handlers; without a web console every ticket is refused, saying why. */
export function webService(jig: JigRuntime, web: WebConsole | undefined, log: Logger): WebServiceServer {
  return {
    issueTicket: unary(log, 'IssueTicket', async (call) => {
      const who = identityOf(call);
      const dut = jig.get(call.request.dut);
      if (!dut.dut.serial)
        throw failedPrecondition(`DUT ${dut.dut.name} has no serial console in the jig description`);
      if (!web)
        throw failedPrecondition(
          'this agent serves no web console (start it with jiglet serve --web HOST:PORT, or web: in its config)',
        );
      const issued = web.issueTicket(who, dut.dut.name, call.getHost());
      log.info({ identity: who.name, role: who.role, dut: dut.dut.name }, 'web console ticket issued');
      return { ticket: issued.ticket, url: issued.url, expires: new Date(issued.expiresAt) };
    }),
  };
}
