/**
 * Expect on a DUT's serial log: wait, on the agent, for a line matching a pattern (RE2, so a
 * client's pattern cannot stall the agent: line-matcher.ts), from an offset, a time, the current
 * end or the last power-on, across capture restarts, without streaming the log to the client.
 * Each search is published to the run record, matched or not.
 */
import type { RE2JS } from 're2js';
import { failedPrecondition } from '../../../protocol/src/errors.js';
import type { AgentEvents } from '../events/agent-events.js';
import type { DutRuntime } from './dut-runtime.js';
import { LineMatcher } from './line-matcher.js';
import { pumpSerial, type SerialStart } from './serial-pump.js';

/** The line that matched. */
export interface ExpectMatch {
  line: string;
  matched: string;
  groups: string[];
  lineOffset: number;
  /**
   * Where to search from for the next match: just after the matched line, which may be inside
   * its record (a search from there sees the rest of that record).
   */
  nextOffset: number;
  time: Date;
}

/** Nothing matched in time: what was seen, and where the search stood. */
export interface ExpectTimeout {
  lastLines: string[];
  offset: number;
  /** Why the port may be quiet ("the serial port (…) is absent: …"), or empty. */
  serialState: string;
}

/** How an expect ended: a match or a timeout, in the capture job's log it ended in. */
export type ExpectOutcome = { captureJobId: string } & (
  | { match: ExpectMatch; timeout?: undefined }
  | { timeout: ExpectTimeout; match?: undefined }
);

/** What an expect searches for, where, and for how long. */
export interface ExpectOptions {
  dut: DutRuntime;
  /** The pattern as the client gave it (for the run record) and compiled. */
  pattern: string;
  re: RE2JS;
  timeoutMs: number;
  /** Where to start: since the last power-on, or a start resolved only once a capture exists. */
  start: 'since-power-on' | (() => SerialStart);
  /** Aborted when the client went away: the search ends without an answer. */
  clientGone: AbortSignal;
  events: AgentEvents;
  /** Who searched (for the run record). */
  by: string;
}

/**
 * Searches until a line matches or the timeout passes, and resolves with either; 'client-gone'
 * when the client went away first (nothing is published then).
 */
export async function expectLine(o: ExpectOptions): Promise<ExpectOutcome | 'client-gone'> {
  const { dut, re } = o;
  const found = new AbortController();
  const deadline = AbortSignal.timeout(o.timeoutMs);
  const signal = AbortSignal.any([o.clientGone, found.signal, deadline]);
  let matcher = new LineMatcher(re);
  let match: ExpectMatch | undefined;
  const first = dut.requireCapture();
  const start = o.start === 'since-power-on' ? sincePowerOn(dut, first.jobId) : o.start();
  let captureJobId = first.jobId;
  let matchedIn = captureJobId;
  // Where the search stands: reported on a timeout, so a client can go on from there.
  let reached = 'offset' in start ? start.offset : 'fromEnd' in start ? first.boundary : 0;
  await pumpSerial({
    dut,
    start,
    follow: true,
    signal,
    reader: {
      onCapture: (monitor, restarted) => {
        captureJobId = monitor.jobId;
        if (restarted) matcher = new LineMatcher(re); // a line never spans two captures
      },
      onRecord: (record) => {
        reached = record.nextOffset;
        if (record.kind !== 'chunk' || match) return true;
        const m = matcher.push(record.data, record.offset, record.nextOffset - record.data.length);
        if (m) {
          matchedIn = captureJobId;
          match = {
            line: m.line,
            matched: m.matched,
            groups: m.groups,
            lineOffset: m.lineOffset,
            nextOffset: m.endOffset,
            time: new Date(record.at),
          };
          found.abort();
        }
        return true;
      },
      drained: async () => {},
    },
  });
  const publish = (m?: ExpectMatch): void =>
    o.events.publish({
      kind: 'expect',
      at: Date.now(),
      dut: dut.dut.name,
      pattern: o.pattern,
      by: o.by,
      matched: m !== undefined,
      line: m?.line,
      lineOffset: m?.lineOffset,
    });
  if (match) {
    publish(match);
    return { captureJobId: matchedIn, match };
  }
  if (o.clientGone.aborted) return 'client-gone';
  publish();
  const capture = dut.capture;
  const serialState =
    capture && capture.state !== 'open'
      ? `the serial port (${dut.serialSource}) is ${capture.state}${capture.lastEvent ? `: ${capture.lastEvent}` : ''}`
      : '';
  return { captureJobId, timeout: { lastLines: matcher.lastLines, offset: reached, serialState } };
}

/** Where the serial log stood at the DUT's last power-on (the start of a capture that began since). */
function sincePowerOn(dut: DutRuntime, captureJobId: string): SerialStart {
  const mark = dut.lastPowerOn;
  if (!mark)
    throw failedPrecondition(
      `${dut.dut.name} has not been switched on since the agent started: power it on (jigctl power on --dut ${dut.dut.name}) or search with --offset`,
    );
  return mark.captureJobId === captureJobId ? { offset: mark.offset } : {};
}
