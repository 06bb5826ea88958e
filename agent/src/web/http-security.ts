/**
 * The headers every web console response carries, and the Content-Security-Policy. Scripts come
 * only from our own files (no inline script anywhere), nothing may frame the page, and no other
 * origin may read a response: there are no CORS headers at all.
 *
 * xterm.js's DOM renderer writes its layout and theme into `<style>` elements it creates at run
 * time, and sets `style` attributes for 24-bit colours. So `style-src-elem` admits our own files
 * plus `<style>` elements carrying this response's nonce (the page script stamps it on the
 * elements xterm creates), and `style-src-attr` allows inline style attributes. Everything a
 * style could load is still confined by `img-src 'self'` and `default-src 'none'` (no fonts).
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** A fresh nonce for one page's style elements. */
export function newNonce(): string {
  return randomBytes(16).toString('base64');
}

/** The policy of a response; `nonce` admits that page's runtime `<style>` elements. */
export function contentSecurityPolicy(nonce?: string): string {
  const styleElem = nonce ? `'self' 'nonce-${nonce}'` : "'self'";
  return [
    "default-src 'none'",
    "script-src 'self'",
    // A browser without CSP 3's -elem/-attr split falls back to this line.
    `style-src ${styleElem}`,
    `style-src-elem ${styleElem}`,
    "style-src-attr 'unsafe-inline'",
    "connect-src 'self'",
    "img-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');
}

/** Sets the headers every response carries; pages and API answers are never cached. */
export function setSecurityHeaders(res: ServerResponse, opts: { nonce?: string; cache: boolean }): void {
  res.setHeader('Content-Security-Policy', contentSecurityPolicy(opts.nonce));
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  // Other origins may neither embed our responses nor keep a handle on our window.
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cache-Control', opts.cache ? 'private, max-age=300' : 'no-store');
}

/** HTML-escapes text for element content and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
