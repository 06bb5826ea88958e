/**
 * The web console's HTML: the DUT list, the console page (a shell; its script does the rest) and
 * the page a refused request gets. Every value is escaped; no page carries inline script or style.
 */
import { escapeHtml as e } from './http-security.js';

/** One row of the DUT list. */
export interface DutRow {
  name: string;
  labels: Record<string, string>;
  power: string;
  /** Lease holder and expiry, or empty when the DUT is free. */
  holder: string;
  leaseExpires?: number;
  health: string;
  healthReason: string;
  serial: string;
  /** This browser has a session for the DUT's console. */
  hasSession: boolean;
}

function page(title: string, body: string, head = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)}</title>
<link rel="stylesheet" href="/static/page.css">
${head}</head>
<body>
${body}
</body>
</html>
`;
}

/** The DUT list for a browser signed in as `who`. */
export function dutListPage(who: { name: string; role: string }, rows: readonly DutRow[]): string {
  const body = rows
    .map((r) => {
      const labels = Object.entries(r.labels)
        .map(([k, v]) => `<span class="label">${e(k)}=${e(v)}</span>`)
        .join(' ');
      const lease = r.holder
        ? `${e(r.holder)}${r.leaseExpires ? ` <small>until ${e(new Date(r.leaseExpires).toISOString())}</small>` : ''}`
        : '<span class="muted">free</span>';
      const health = `<span class="health-${e(r.health)}">${e(r.health)}</span>${r.healthReason ? ` <small>${e(r.healthReason)}</small>` : ''}`;
      const open = r.hasSession
        ? `<a href="/console/${e(r.name)}">open console</a>`
        : `<code>jigctl console --web --dut ${e(r.name)}</code>`;
      return `<tr><th scope="row">${e(r.name)}</th><td>${labels}</td><td class="power-${e(r.power)}">${e(r.power)}</td><td>${lease}</td><td>${health}</td><td>${e(r.serial)}</td><td>${open}</td></tr>`;
    })
    .join('\n');
  return page(
    'jiglet: DUTs',
    `<header><h1>DUTs</h1><span class="who">${e(who.name)} (${e(who.role)})</span> <a href="/">refresh</a></header>
<main>
<table>
<thead><tr><th>DUT</th><th>labels</th><th>power</th><th>lease</th><th>health</th><th>serial</th><th>console</th></tr></thead>
<tbody>
${body}
</tbody>
</table>
</main>`,
  );
}

/** The console page of one DUT: its script opens the terminal and the WebSocket. */
export function consolePage(dut: string, nonce: string): string {
  return page(
    `${dut}: jiglet console`,
    `<header><a href="/">DUTs</a><h1>${e(dut)}</h1><span id="mode" class="badge">connecting</span><span id="reason" class="muted"></span><span id="conn" class="muted"></span><span id="who" class="who"></span><span id="port" class="muted"></span></header>
<p id="notice" class="notice" hidden></p>
<main id="terminal" data-dut="${e(dut)}"></main>`,
    `<link rel="stylesheet" href="/static/xterm.css">
<script type="module" src="/static/console.js" nonce="${e(nonce)}"></script>
`,
  );
}

/** What a refused or failed request shows: what happened and what to do. */
export function messagePage(title: string, message: string, hint: string): string {
  return page(
    `jiglet: ${title}`,
    `<main class="message"><h1>${e(title)}</h1><p id="message">${e(message)}</p><p class="hint">${e(hint)}</p></main>`,
  );
}
