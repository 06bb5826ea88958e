/**
 * The web console half of the client library: a ticket that opens a DUT's console in a browser,
 * which cannot present our client certificate. Reached as `client.web`.
 */
import { type ChannelCredentials, type Client, Metadata } from '@grpc/grpc-js';
import { type IssueTicketResponse, WebServiceClient } from '../../protocol/gen/jiglet/v1/web.js';
import { JigletError } from '../../protocol/src/errors.js';
import { callOptions, unaryCall } from './unary-call.js';

/** A browser console ticket: open `url` once, before `expires`. */
export interface WebTicket {
  ticket: string;
  url: string;
  expires: Date;
}

/** The WebService client. */
export class WebClient {
  readonly #stub: WebServiceClient;

  constructor(server: string, creds: ChannelCredentials, channel: ReturnType<Client['getChannel']>) {
    this.#stub = new WebServiceClient(server, creds, { channelOverride: channel });
  }

  /** A single-use ticket for `dut`'s console, bound to this client's identity and role. */
  async ticket(dut: string): Promise<WebTicket> {
    const res = await unaryCall<IssueTicketResponse>((cb) =>
      this.#stub.issueTicket({ dut }, new Metadata(), callOptions(), cb),
    );
    if (!res.expires) throw new JigletError('JIGLET_E_INTERNAL', 'the agent answered without an expiry');
    return { ticket: res.ticket, url: res.url, expires: res.expires };
  }
}
