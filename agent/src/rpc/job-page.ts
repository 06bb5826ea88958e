/**
 * One page of `ListJobs` (issue 11). The listing is bounded twice: by count (page_size) and by
 * encoded size, because a job's spec may hold up to 256 KiB of arguments and environment, and
 * a response must stay far below the client's 8 MiB receive limit whatever the jobs hold.
 *
 * The page token is the key (createdAt, id) of the last job sent: the next page starts after
 * it, so jobs started or pruned between two pages never make a job appear twice or be skipped.
 */
import { Job, type ListJobsRequest, type ListJobsResponse } from '../../../protocol/gen/jiglet/v1/jobs.js';
import { invalidArgument } from '../../../protocol/src/errors.js';
import type { JobCursor } from '../jobs/job-index.js';
import type { JobStateName } from '../jobs/job-state.js';
import type { JobView, Supervisor } from '../jobs/supervisor.js';

/** Jobs per page when the client names no page size. */
export const DEFAULT_PAGE_SIZE = 100;
/** Most jobs per page. */
export const MAX_PAGE_SIZE = 1000;
/** A page stops growing at this many encoded bytes (the client accepts 8 MiB). */
export const MAX_PAGE_BYTES = 4 * 1024 * 1024;

/** Builds one page; `wire` turns a job into its wire form for this caller. */
export function jobPage(
  supervisor: Supervisor,
  request: ListJobsRequest,
  states: readonly JobStateName[],
  wire: (view: JobView) => Job,
): ListJobsResponse {
  const limit = request.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(request.pageSize, MAX_PAGE_SIZE);
  const cursor = request.pageToken === '' ? undefined : decodeToken(request.pageToken);
  const filter = { states, owner: request.owner, dut: request.dut };
  const { jobs: views, more, last } = supervisor.page(filter, limit, cursor);
  const jobs: Job[] = [];
  let bytes = 0;
  for (const [i, view] of views.entries()) {
    const job = wire(view);
    const size = Job.encode(job).finish().length + 8;
    // The first job always goes, so a page can never be empty while jobs remain.
    if (i > 0 && bytes + size > MAX_PAGE_BYTES) {
      const sent = views[i - 1]!.record;
      return { jobs, nextPageToken: encodeToken({ createdAt: sent.createdAt, id: sent.id }) };
    }
    jobs.push(job);
    bytes += size;
  }
  return { jobs, nextPageToken: more && last ? encodeToken(last) : '' };
}

function encodeToken(key: JobCursor): string {
  return Buffer.from(`${key.createdAt}/${key.id}`).toString('base64url');
}

function decodeToken(token: string): JobCursor {
  const text = token.length <= 200 ? Buffer.from(token, 'base64url').toString() : '';
  const match = /^(\d{1,16})\/([A-Za-z0-9-]{1,64})$/.exec(text);
  if (!match) {
    throw invalidArgument(
      'page_token is not one this agent gave out: pass next_page_token from the previous ListJobs answer, or none for the first page',
    );
  }
  return { createdAt: Number(match[1]), id: match[2]! };
}
