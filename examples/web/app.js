// ringgate chat client: due packets over WebSocket, one packet per binary
// message. Plain JS, no dependencies.
//
// Packet layout (must match the gate's [packet] section; these are its defaults):
//
//   size   u32  bytes that follow: header + route + seq + payload
//   header u8   bit 7 = heartbeat; bits 6..0 = extension code (0 = ok)
//   route  i16  (absent in heartbeats)
//   seq    i16  (absent in heartbeats)
//   payload     UTF-8 text here
//
// A heartbeat is size 1, header 0x80; the gate's may carry 8 more bytes of time
// (size 9, header 0xC0). Any header with bit 7 set is a heartbeat here.
"use strict";

const LITTLE_ENDIAN = false; // [packet] byte_order = "big"
const HEARTBEAT_MS = 5000; // well inside [network.tcp.heartbeat] interval = "10s"

// The chat node's routes.
const ROUTE = { login: 1, join: 2, say: 3, whisper: 4, roomMessage: 100, whisperIn: 101 };
const ROUTE_NAMES = { 1: "login", 2: "join", 3: "say", 4: "whisper" };
// Extension codes the gate puts in error replies.
const EXT_NAMES = { 1: "no node serves this route", 2: "the node is down" };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let ws = null;
let heartbeat = null;
let nextSeq = 1;

const $ = (id) => document.getElementById(id);

function log(text, kind = "info") {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  const box = $("log");
  box.appendChild(line);
  box.scrollTop = box.scrollHeight;
}

function setStatus(text) {
  $("status").textContent = text;
  $("connect-btn").textContent = ws ? "Disconnect" : "Connect";
}

// --- packets -------------------------------------------------------------

function encodeData(route, seq, text) {
  const payload = encoder.encode(text);
  const buf = new ArrayBuffer(4 + 1 + 2 + 2 + payload.length);
  const view = new DataView(buf);
  view.setUint32(0, 1 + 2 + 2 + payload.length, LITTLE_ENDIAN);
  view.setUint8(4, 0);
  view.setInt16(5, route, LITTLE_ENDIAN);
  view.setInt16(7, seq, LITTLE_ENDIAN);
  new Uint8Array(buf, 9).set(payload);
  return buf;
}

function encodeHeartbeat() {
  const buf = new ArrayBuffer(5);
  const view = new DataView(buf);
  view.setUint32(0, 1, LITTLE_ENDIAN);
  view.setUint8(4, 0x80);
  return buf;
}

// Returns { heartbeat: true } or { ext, route, seq, text }.
function decode(buf) {
  const view = new DataView(buf);
  if (buf.byteLength < 5) throw new Error(`packet of ${buf.byteLength} bytes`);
  const size = view.getUint32(0, LITTLE_ENDIAN);
  if (size !== buf.byteLength - 4) throw new Error(`size ${size} in a ${buf.byteLength}-byte message`);
  const header = view.getUint8(4);
  if (header & 0x80) return { heartbeat: true };
  if (buf.byteLength < 9) throw new Error("data packet too short");
  return {
    ext: header & 0x7f,
    route: view.getInt16(5, LITTLE_ENDIAN),
    seq: view.getInt16(7, LITTLE_ENDIAN),
    text: decoder.decode(new Uint8Array(buf, 9)),
  };
}

// --- connection ----------------------------------------------------------

function send(route, text) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    log("not connected", "error");
    return;
  }
  const seq = nextSeq;
  nextSeq = nextSeq >= 0x7fff ? 1 : nextSeq + 1; // i16, 0 is left for pushes
  ws.send(encodeData(route, seq, text));
  log(`→ ${ROUTE_NAMES[route] || `route ${route}`} #${seq}: ${text}`, "out");
}

function onPacket(p) {
  if (p.heartbeat) return; // the gate answered our heartbeat
  if (p.ext !== 0) {
    const why = EXT_NAMES[p.ext] || `extension code ${p.ext}`;
    log(`✗ ${ROUTE_NAMES[p.route] || `route ${p.route}`} #${p.seq}: ${why}`, "error");
  } else if (p.route === ROUTE.roomMessage) {
    log(`[room] ${p.text}`, "push");
  } else if (p.route === ROUTE.whisperIn) {
    log(`[whisper] ${p.text}`, "push");
  } else if (p.text.startsWith("error")) {
    log(`← ${ROUTE_NAMES[p.route] || p.route} #${p.seq}: ${p.text}`, "error");
  } else {
    log(`← ${ROUTE_NAMES[p.route] || p.route} #${p.seq}: ${p.text}`, "reply");
  }
}

function connect(url) {
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  setStatus("connecting…");
  ws.onopen = () => {
    setStatus("connected");
    log(`connected to ${url}`);
    heartbeat = setInterval(() => ws.send(encodeHeartbeat()), HEARTBEAT_MS);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      log("unexpected text message", "error");
      return;
    }
    try {
      onPacket(decode(ev.data));
    } catch (e) {
      log(`bad packet: ${e.message}`, "error");
    }
  };
  ws.onerror = () => log("connection error (is the gate running, and the origin allowed?)", "error");
  ws.onclose = (ev) => {
    clearInterval(heartbeat);
    ws = null;
    setStatus("disconnected");
    log(`closed: code ${ev.code}${ev.reason ? ` (${ev.reason})` : ""}`);
  };
}

// --- forms ---------------------------------------------------------------

function onSubmit(id, handler) {
  $(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    handler();
  });
}

onSubmit("connect", () => (ws ? ws.close(1000) : connect($("url").value.trim())));
onSubmit("login", () => send(ROUTE.login, $("uid").value.trim()));
onSubmit("join", () => send(ROUTE.join, $("room").value.trim()));
onSubmit("say", () => {
  send(ROUTE.say, $("text").value);
  $("text").value = "";
});
onSubmit("whisper", () => {
  const line = $("to").value.trim();
  if (!/^\S+\s+\S/.test(line)) {
    log('whisper as "<uid> <text>"', "error");
    return;
  }
  send(ROUTE.whisper, line);
  $("to").value = "";
});

$("url").value = `ws://${location.hostname || "127.0.0.1"}:3554/`;
setStatus("disconnected");
