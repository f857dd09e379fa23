// The one WebSocket to the bridge (/ws, docs/viewer.md), reconnecting after RECONNECT_MS.
// Text messages are parsed JSON; binary ones are one frame each (u32le header length, JSON
// header, payload), handed on as (header, buffer, payload offset). Knows nothing of the page.

const RECONNECT_MS = 1000;

let ws = null;
const decoder = new TextDecoder();

// handlers: {onText(message), onFrame(header, buf, base), onClose()}
export function connect(handlers) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // the session token of the URL octguide view printed; the bridge refuses a socket without it
  const token = new URLSearchParams(location.search).get("token") || "";
  const sock = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  sock.binaryType = "arraybuffer";
  ws = sock;
  sock.onmessage = (ev) => {
    try {
      if (typeof ev.data === "string") handlers.onText(JSON.parse(ev.data));
      else onBinary(ev.data, handlers);
    } catch (err) {
      console.error("octguide viewer: bad message", err);
    }
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    handlers.onClose();
    setTimeout(() => connect(handlers), RECONNECT_MS);
  };
}

function onBinary(buf, handlers) {
  const dv = new DataView(buf);
  const hlen = dv.getUint32(0, true);
  const header = JSON.parse(decoder.decode(new Uint8Array(buf, 4, hlen)));
  handlers.onFrame(header, buf, 4 + hlen);
}

// sends a request when the socket is open; returns whether it was sent
export function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}
