/**
 * `jigctl report (--lease L | --job ID) [-o FILE]`: the run record of a lease or a job as one
 * self-contained HTML file (timeline, serial log, events) that opens offline.
 */
import { invalidArgument } from '../../../protocol/src/errors.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { renderReport } from '../report/render-report.js';
import { writeReport } from '../report/write-report.js';
import { connect } from './job-commands.js';

/** `jigctl report` flags; `lease` here names the lease to report on. */
export interface ReportFlags extends ConnectionFlags {
  job?: string;
  output?: string;
  serial?: boolean;
}

/** `jigctl report`. */
export async function reportCommand(flags: ReportFlags): Promise<number> {
  const leaseId = flags.lease;
  const jobId = flags.job;
  if (!leaseId === !jobId) throw invalidArgument('name what to report on: --lease ID or --job ID');
  const id = (leaseId ?? jobId)!;
  const client = connect(flags);
  try {
    const timeline = await client.records.timeline(leaseId ? { leaseId } : { jobId: jobId! }, {
      includeSerial: flags.serial ?? true,
    });
    const html = renderReport(timeline, { agent: resolveConnection(flags).server });
    // The id names the default file; whatever was typed, it stays a name in this folder.
    await writeReport(html, flags.output ?? `run-${id.replace(/[^\w.-]/g, '_')}.html`);
    return 0;
  } finally {
    client.close();
  }
}
