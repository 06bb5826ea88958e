/**
 * What a starting agent does with the jobs of its earlier run: a job that was still pending or
 * running becomes `lost` (through the same compare-and-set as every transition), and whatever is
 * left in its cgroup is killed, so nothing runs unsupervised.
 */
import type { Logger } from 'pino';
import { OutputLog } from '../output/output-log.js';
import type { Containment } from './containment.js';
import type { JobRecord, JobRecords } from './job-records.js';
import { compareAndSet, isFinal } from './job-state.js';

/** Loads every readable job record, marking the unfinished ones lost; each comes back final. */
export async function recoverJobs(
  records: JobRecords,
  containment: Containment,
  log: Logger,
): Promise<JobRecord[]> {
  const loaded = records.loadAll((dir, err) => log.error({ dir, err }, 'skipping an unreadable job record'));
  for (const record of loaded) {
    if (isFinal(record.state)) continue;
    // As read from disk: the state the record leaves is the one it was saved in.
    const was = record.state;
    if (record.cgroup) {
      try {
        const cg = containment.adopt(record.cgroup);
        const leftovers = await cg.pids();
        await cg.killAll();
        await cg.remove();
        if (leftovers.length > 0)
          log.warn({ job: record.id, pids: leftovers }, 'killed leftovers of lost job');
      } catch (err) {
        // A record whose cgroup paths fail validation must not keep the agent from starting.
        log.error(
          { job: record.id, err, cgroup: record.cgroup },
          'could not clean up the cgroup of a lost job',
        );
      }
    }
    compareAndSet(record, was, 'lost');
    record.error = 'the agent stopped while this job was running';
    record.endedAt = Date.now();
    record.outputBytes = logLengthOrZero(records.dirOf(record.id), log);
    delete record.pid;
    records.save(record);
  }
  return loaded;
}

/** Size of a job's log, or 0 (logged) when the file is gone or unreadable. */
function logLengthOrZero(dir: string, log: Logger): number {
  try {
    return OutputLog.openExisting(dir).length;
  } catch (err) {
    log.warn({ dir, err }, 'job output log is unreadable');
    return 0;
  }
}
