/**
 * Text into HTML. Serial output and job commands come from devices and users, so every string
 * that reaches the page goes through `html()`: nothing in it can open a tag or leave an
 * attribute. Terminal colour codes are dropped and other control bytes shown as symbols.
 */

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences are what it removes
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it replaces
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Escapes text for an element's content or a quoted attribute value. */
export function html(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Device text made printable: colour codes removed, other controls as Unicode control pictures. */
export function printable(text: string): string {
  return text.replace(ANSI, '').replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    if (code < 0x20) return String.fromCharCode(0x2400 + code);
    return code === 0x7f ? '\u2421' : '\ufffd';
  });
}

/** `HH:MM:SS.mmm` in UTC (the report states that its times are UTC). */
export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

/** A duration for people: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}
