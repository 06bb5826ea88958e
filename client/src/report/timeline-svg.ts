/**
 * The report's timeline as hand-drawn SVG (no charting library: nothing to inline or keep up to
 * date): a time axis, the lease, a power lane per DUT, the flash throughput curve, markers for
 * expect, health and serial-port events, and one row per job coloured by outcome. Every drawn
 * item carries `data-kind` and `data-t` (epoch ms), which the page's script uses to scroll the
 * serial log and a browser test uses to find each kind.
 */
import { clock, duration, html } from './html-text.js';
import type { ReportEvent, ReportModel } from './report-model.js';

/** Drawing size in SVG units; the page scales it to its width. */
const WIDTH = 1200;
/** Left gutter for lane labels, right padding. */
const X0 = 170;
const X1 = WIDTH - 16;
const AXIS_H = 26;
const LANE_H = 22;
const FLASH_H = 90;
const JOB_H = 18;
const GAP = 8;
/** Tick steps to choose from, in ms: about ten ticks across whatever the span is. */
const STEPS = [
  100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];
const MAX_LABEL_CHARS = 26;

type Attrs = Record<string, string | number>;

function attrs(a: Attrs): string {
  return Object.entries(a)
    .map(([k, v]) => ` ${k}="${typeof v === 'number' ? round(v) : html(v)}"`)
    .join('');
}

function round(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/** An element with a tooltip. */
function el(tag: string, a: Attrs, title?: string): string {
  return title === undefined
    ? `<${tag}${attrs(a)}/>`
    : `<${tag}${attrs(a)}><title>${html(title)}</title></${tag}>`;
}

function label(y: number, text: string): string {
  let short = text;
  if (text.length > MAX_LABEL_CHARS) {
    // At a word's end where there is one: "sh -c 'pytest…" reads better than "sh -c 'pyt…".
    const cut = text.slice(0, MAX_LABEL_CHARS - 1);
    const space = cut.lastIndexOf(' ');
    short = `${space > MAX_LABEL_CHARS / 2 ? cut.slice(0, space) : cut}…`;
  }
  return `<text${attrs({ x: 8, y: y + 14, class: 'lbl' })}>${html(short)}</text>`;
}

/** The SVG element of the report's timeline. */
export function timelineSvg(m: ReportModel): string {
  const span = Math.max(1, m.to - m.from);
  const x = (t: number): number => X0 + ((Math.min(Math.max(t, m.from), m.to) - m.from) / span) * (X1 - X0);
  const width = (a: number, b: number): number => Math.max(2, x(b) - x(a));
  const body: string[] = [];
  let y = AXIS_H + GAP;

  body.push(label(y, 'lease'));
  for (const l of m.leases) {
    body.push(
      el(
        'rect',
        {
          x: x(l.from),
          y,
          width: width(l.from, l.to),
          height: LANE_H,
          class: 'lease',
          'data-kind': 'lease',
          'data-t': l.from,
        },
        `lease ${l.id ? `${l.id} ` : ''}of ${l.holder} (token ${l.token}): ${clock(l.from)} → ${clock(l.to)} (${l.ended})`,
      ),
    );
  }
  for (const e of m.events.filter((e) => e.kind === 'lease')) body.push(marker(e, x(e.at), y));
  y += LANE_H + GAP;

  const duts = [...new Set(m.power.map((p) => p.dut))];
  for (const dut of duts.length > 0 ? duts : m.dut ? [m.dut] : []) {
    body.push(label(y, `power ${dut}`));
    for (const p of m.power.filter((p) => p.dut === dut)) {
      body.push(
        el(
          'rect',
          {
            x: x(p.from),
            y,
            width: width(p.from, p.to),
            height: LANE_H,
            class: `power p-${p.state}`,
            'data-kind': 'power',
            'data-state': p.state,
            'data-t': p.from,
          },
          `power ${p.state} ${clock(p.from)} → ${clock(p.to)} (${duration(p.to - p.from)})${p.by ? `, switched by ${p.by}` : ''}`,
        ),
      );
    }
    y += LANE_H + GAP;
  }

  body.push(...flashLane(m, x, y));
  y += FLASH_H + GAP;

  body.push(label(y, 'events'));
  for (const e of m.events.filter((e) => ['expect', 'health', 'serial', 'exec', 'state'].includes(e.kind)))
    body.push(marker(e, x(e.at), y));
  y += LANE_H + GAP;

  if (m.cases.length > 0) {
    body.push(label(y, 'test cases'));
    for (const c of m.cases) {
      body.push(
        el(
          'rect',
          {
            x: x(c.from),
            y: y + 2,
            width: width(c.from, c.to),
            height: LANE_H - 4,
            class: `case s-${c.status}`,
            'data-kind': 'testcase',
            'data-status': c.status,
            'data-t': c.from,
          },
          `${c.suite ? `${c.suite} › ` : ''}${c.name}: ${c.status} (${duration(c.durationMs)})${c.message ? `\n${c.message}` : ''}`,
        ),
      );
    }
    y += LANE_H + GAP;
  }

  for (const j of m.jobs) {
    body.push(label(y, j.label));
    body.push(
      el(
        'rect',
        {
          x: x(j.from),
          y: y + 2,
          width: width(j.from, j.to),
          height: JOB_H - 4,
          class: `job o-${j.outcome}`,
          'data-kind': 'job',
          'data-outcome': j.outcome,
          'data-job': j.id,
          'data-t': j.from,
        },
        `${j.label} — ${j.role} job ${j.id} (${j.owner}): ${j.command}\n${j.state}${j.detail ? ` — ${j.detail}` : ''}\n${clock(j.from)} → ${clock(j.to)} (${duration(j.to - j.from)})`,
      ),
    );
    y += JOB_H;
  }
  const height = y + GAP;
  return [
    `<svg${attrs({
      id: 'timeline',
      viewBox: `0 0 ${WIDTH} ${height}`,
      role: 'img',
      'aria-label': `timeline of ${m.subject}`,
      'data-from': m.from,
      'data-to': m.to,
      'data-x0': X0,
      'data-x1': X1,
    })}>`,
    el('rect', { x: X0, y: AXIS_H, width: X1 - X0, height: height - AXIS_H, class: 'hit' }),
    axis(m.from, m.to, x, height),
    ...body,
    el('line', {
      id: 'cursor',
      x1: X0,
      x2: X0,
      y1: AXIS_H,
      y2: height,
      class: 'cursor',
      visibility: 'hidden',
    }),
    '</svg>',
  ].join('\n');
}

/** Ticks with UTC clock labels, and grid lines through every lane. */
function axis(from: number, to: number, x: (t: number) => number, height: number): string {
  const step = STEPS.find((s) => (to - from) / s <= 10) ?? STEPS.at(-1)!;
  const out: string[] = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    const text = step < 1000 ? clock(t).slice(3) : clock(t).slice(0, 8);
    out.push(el('line', { x1: x(t), x2: x(t), y1: AXIS_H - 4, y2: height, class: 'grid' }));
    out.push(`<text${attrs({ x: x(t), y: AXIS_H - 8, class: 'tick' })}>${html(text)}</text>`);
  }
  return out.join('\n');
}

/** The throughput of each flash (MB/s over time), with its start and end as ticks. */
function flashLane(m: ReportModel, x: (t: number) => number, top: number): string[] {
  const out = [label(top, 'flash MB/s')];
  const max = Math.max(1, ...m.flash.map((f) => f.mbPerS));
  const y = (rate: number): number => top + FLASH_H - 4 - (rate / max) * (FLASH_H - 12);
  out.push(el('line', { x1: X0, x2: X1, y1: y(0), y2: y(0), class: 'base' }));
  out.push(`<text${attrs({ x: 8, y: top + 30, class: 'lbl dim' })}>${html(`max ${round(max)}`)}</text>`);
  for (const job of new Set(m.flash.map((f) => f.job))) {
    const points = m.flash.filter((f) => f.job === job);
    out.push(
      el(
        'polyline',
        {
          points: points.map((p) => `${round(x(p.at))},${round(y(p.mbPerS))}`).join(' '),
          class: 'flash-curve',
          'data-kind': 'flash',
          'data-job': job,
          'data-t': points[0]!.at,
        },
        `flash job ${job}`,
      ),
    );
    for (const p of points) {
      out.push(
        el(
          'circle',
          { cx: x(p.at), cy: y(p.mbPerS), r: 2.5, class: 'flash-pt', 'data-kind': 'flash', 'data-t': p.at },
          `${clock(p.at)} ${p.phase}: ${round(p.mbPerS)} MB/s, ${mib(p.bytesWritten)} written${p.totalBytes ? ` of ${mib(p.totalBytes)}` : ''}`,
        ),
      );
    }
  }
  for (const e of m.events.filter((e) => e.kind === 'flash')) {
    out.push(
      el(
        'line',
        {
          x1: x(e.at),
          x2: x(e.at),
          y1: top,
          y2: top + FLASH_H,
          class: `flash-mark f-${e.fields.phase ?? ''}`,
          'data-kind': 'flash',
          'data-t': e.at,
        },
        `${clock(e.at)} ${e.summary}`,
      ),
    );
  }
  return out;
}

/** One event as a small shape on a lane: expect ◆, lease ▼, health ●, serial port ■. */
function marker(e: ReportEvent, cx: number, top: number): string {
  const cy = top + LANE_H / 2;
  const ok = e.kind === 'expect' ? (e.fields.matched === 'true' ? ' ok' : ' bad') : '';
  const common = { class: `mark m-${e.kind}${ok}`, 'data-kind': e.kind, 'data-t': e.at };
  const title = `${clock(e.at)} ${e.summary}`;
  switch (e.kind) {
    case 'expect':
      return el(
        'polygon',
        {
          points: `${round(cx)},${cy - 7} ${round(cx + 6)},${cy} ${round(cx)},${cy + 7} ${round(cx - 6)},${cy}`,
          ...common,
        },
        title,
      );
    case 'lease':
      return el(
        'polygon',
        { points: `${round(cx - 6)},${top} ${round(cx + 6)},${top} ${round(cx)},${top + 9}`, ...common },
        title,
      );
    case 'health':
      return el('circle', { cx, cy, r: 5, ...common }, title);
    default:
      return el('rect', { x: cx - 4, y: cy - 4, width: 8, height: 8, ...common }, title);
  }
}

function mib(bytes: number): string {
  return `${round(bytes / 1024 / 1024)} MiB`;
}
