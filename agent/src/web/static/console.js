/**
 * The web console page: an xterm.js terminal fed by the agent over a WebSocket (see
 * agent/src/web/console-socket.ts for the protocol). Binary frames are serial bytes behind an
 * 8-byte offset; text frames are JSON control messages. The page remembers the capture job and
 * offset it has reached, and says so in its hello after a reconnect, so nothing is shown twice.
 */
import { Terminal } from '/static/xterm.mjs';

/** Reconnect delays: doubling from the first to the last. */
const RETRY_FIRST_MS = 250;
const RETRY_LAST_MS = 10_000;
/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSE = new Set([4400]);

// xterm's DOM renderer creates <style> elements at run time; this page's Content-Security-Policy
// admits only those carrying the nonce the agent put on this script, so they are stamped with it.
const nonce = document.querySelector('script[nonce]')?.nonce ?? '';
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (name, options) {
  const element = createElement.call(this, name, options);
  if (String(name).toLowerCase() === 'style') element.nonce = nonce;
  return element;
};

const host = document.getElementById('terminal');
const dut = host.dataset.dut;
const ui = {
  mode: document.getElementById('mode'),
  reason: document.getElementById('reason'),
  conn: document.getElementById('conn'),
  who: document.getElementById('who'),
  port: document.getElementById('port'),
  notice: document.getElementById('notice'),
};

const term = new Terminal({ scrollback: 10_000, cursorBlink: true, disableStdin: true, fontSize: 14 });
term.open(host);
fitToBox();
window.addEventListener('resize', fitToBox);

/** Where this page stands in the serial log: the capture job, and the offset of the next record. */
let capture;
let offset;
let writable = false;
let ws;
let retryMs = RETRY_FIRST_MS;
const encoder = new TextEncoder();

term.onData((text) => sendInput(encoder.encode(text)));
// onBinary carries raw bytes as a string of char codes 0-255 (e.g. mouse reports).
term.onBinary((text) => sendInput(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));

connect();

/** Sizes the terminal to its box: the cell size is the screen's size over the grid. */
function fitToBox() {
  const screen = term.element?.querySelector('.xterm-screen');
  if (!screen || screen.clientWidth === 0) return;
  const cellWidth = screen.clientWidth / term.cols;
  const cellHeight = screen.clientHeight / term.rows;
  const cols = Math.max(20, Math.floor(host.clientWidth / cellWidth));
  const rows = Math.max(5, Math.floor(host.clientHeight / cellHeight));
  if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
}

async function connect() {
  ui.conn.textContent = 'connecting';
  let res;
  try {
    res = await fetch(`/api/session/${encodeURIComponent(dut)}`, { cache: 'no-store' });
  } catch {
    return retry();
  }
  if (res.status === 401) {
    const body = await res.json().catch(() => ({}));
    setWritable(false, '');
    ui.mode.textContent = 'no session';
    ui.conn.textContent = 'not connected';
    showNotice(body.error ?? 'This browser has no session for this console.');
    return;
  }
  if (!res.ok) return retry();
  const session = await res.json();
  ui.who.textContent = `${session.identity} (${session.role})`;
  const socket = new WebSocket(`wss://${location.host}/ws/${encodeURIComponent(dut)}`);
  socket.binaryType = 'arraybuffer';
  ws = socket;
  socket.onopen = () => {
    retryMs = RETRY_FIRST_MS;
    ui.conn.textContent = 'connected';
    socket.send(JSON.stringify({ type: 'hello', capture, offset }));
  };
  socket.onmessage = (event) => {
    if (typeof event.data === 'string') control(JSON.parse(event.data));
    else output(event.data);
  };
  socket.onclose = (event) => {
    if (ws === socket) ws = undefined;
    setWritable(false, '');
    if (FINAL_CLOSE.has(event.code)) {
      ui.conn.textContent = 'closed';
      showNotice(event.reason || 'The agent closed this console.');
      return;
    }
    retry();
  };
}

function retry() {
  ui.conn.textContent = `reconnecting in ${(retryMs / 1000).toFixed(1)} s`;
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, RETRY_LAST_MS);
}

function output(buffer) {
  offset = Number(new DataView(buffer).getBigUint64(0));
  term.write(new Uint8Array(buffer, 8));
}

function control(msg) {
  switch (msg.type) {
    case 'state':
      setWritable(msg.writable, msg.reason);
      ui.port.textContent = `serial ${msg.portState}${msg.holder ? `, leased by ${msg.holder}` : ''}`;
      break;
    case 'capture':
      // A new capture job writes a new log from 0: this page's offset belonged to the old one.
      if (capture !== undefined && capture !== msg.captureJobId) {
        offset = 0;
        term.write('\r\n\x1b[2m[jiglet: the serial capture restarted]\x1b[0m\r\n');
      }
      capture = msg.captureJobId;
      break;
    case 'event':
      offset = msg.nextOffset;
      break;
    case 'dropped':
      showNotice(`${msg.bytes} keystroke bytes dropped: ${msg.reason}`);
      break;
    case 'notice':
    case 'error':
      showNotice(msg.message);
      break;
  }
}

function setWritable(value, reason) {
  writable = value === true;
  term.options.disableStdin = !writable;
  ui.mode.textContent = writable ? 'read-write' : 'read-only';
  ui.mode.className = `badge ${writable ? 'writable' : 'readonly'}`;
  ui.reason.textContent = reason ?? '';
}

function sendInput(bytes) {
  if (!writable || ws?.readyState !== WebSocket.OPEN) return;
  ws.send(bytes);
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}
