// ringgate over WebSocket, plain JS, no dependencies, two protocols:
//
// * due packets (the chat example): one packet per binary message.
// * MQTT 3.1.1 (mqant's gate protocol, docs/mqtt.md): a hand-written codec
//   below; the binary messages are a byte stream (a packet may span messages,
//   a message may hold several packets).
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
let mode = "due"; // the protocol of the open (or last) connection: "due" | "mqtt"

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
  $("proto").disabled = !!ws;
  $("client-id").disabled = !!ws;
  $("keepalive").disabled = !!ws;
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
  if (!ws || ws.readyState !== WebSocket.OPEN || mode !== "due") {
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
  mode = "due";
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

// --- MQTT 3.1.1 ------------------------------------------------------------
//
// Fixed header: byte 0 = packet type (bits 7..4) and flags (bits 3..0), then
// the remaining length as a varint of 1 to 4 bytes (7 bits each, low first,
// bit 7 = more). Strings are a u16 big-endian length and UTF-8 bytes. The gate
// sends everything at QoS 0 and needs no SUBSCRIBE for replies and pushes.

const MQTT = { CONNECT: 1, CONNACK: 2, PUBLISH: 3, PUBACK: 4, PUBREC: 5, PUBREL: 6,
  PUBCOMP: 7, SUBSCRIBE: 8, SUBACK: 9, UNSUBSCRIBE: 10, UNSUBACK: 11, PINGREQ: 12,
  PINGRESP: 13, DISCONNECT: 14 };
const MQTT_MAX_REMAINING = 268435455; // 4 varint bytes
const CONNACK_CODES = { 1: "unacceptable protocol version", 2: "client id rejected",
  3: "server unavailable", 4: "bad user name or password", 5: "not authorized" };

function mqttRemainingLength(n) {
  if (!Number.isInteger(n) || n < 0 || n > MQTT_MAX_REMAINING) throw new Error(`remaining length ${n}`);
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function mqttString(s) {
  const b = encoder.encode(s);
  if (b.length > 0xffff) throw new Error("string over 65535 bytes");
  const out = new Uint8Array(2 + b.length);
  out[0] = b.length >> 8;
  out[1] = b.length & 0xff;
  out.set(b, 2);
  return out;
}

// One packet: the first byte, the remaining length, then `parts` (byte arrays).
function mqttPacket(first, parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const rl = mqttRemainingLength(len);
  const out = new Uint8Array(1 + rl.length + len);
  out[0] = first;
  out.set(rl, 1);
  let at = 1 + rl.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// CONNECT, protocol "MQTT" level 4, clean session, no will, user or password.
function mqttConnect(clientId, keepAliveSecs) {
  const vh = new Uint8Array([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepAliveSecs >> 8, keepAliveSecs & 0xff]);
  return mqttPacket(MQTT.CONNECT << 4, [vh, mqttString(clientId)]);
}

// PUBLISH at QoS 0 (no packet id); `payload` is a string (sent as UTF-8) or bytes.
function mqttPublish(topic, payload) {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  return mqttPacket(MQTT.PUBLISH << 4, [mqttString(topic), body]);
}

const MQTT_PINGREQ = new Uint8Array([MQTT.PINGREQ << 4, 0]);
const MQTT_DISCONNECT = new Uint8Array([MQTT.DISCONNECT << 4, 0]);

// Turns a byte stream into packets: push() each binary message as it comes,
// get back the packets it completed (none, one or several). Throws on a
// malformed stream (then the connection is beyond repair).
class MqttDecoder {
  constructor(maxPacket = 1 << 20) {
    this.buf = new Uint8Array(0);
    this.maxPacket = maxPacket;
  }

  push(bytes) {
    const chunk = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    if (this.buf.length === 0) {
      this.buf = chunk.slice();
    } else {
      const b = new Uint8Array(this.buf.length + chunk.length);
      b.set(this.buf);
      b.set(chunk, this.buf.length);
      this.buf = b;
    }
    const packets = [];
    let at = 0;
    for (;;) {
      const p = this.next(at);
      if (!p) break;
      packets.push(p.packet);
      at = p.end;
    }
    this.buf = this.buf.slice(at);
    return packets;
  }

  // The packet starting at `at`, or null if its bytes have not all arrived.
  next(at) {
    const buf = this.buf;
    if (buf.length - at < 2) return null;
    let len = 0;
    let mul = 1;
    let i = at + 1;
    for (;;) {
      if (i >= buf.length) return null; // the varint is cut
      const b = buf[i++];
      len += (b & 0x7f) * mul;
      if (!(b & 0x80)) break;
      mul *= 128;
      if (i - at - 1 === 4) throw new Error("remaining length over 4 bytes");
    }
    if (len > this.maxPacket) throw new Error(`packet of ${len} bytes`);
    if (buf.length - i < len) return null;
    return { packet: mqttParse(buf[at], buf.subarray(i, i + len)), end: i + len };
  }
}

// One packet's fields from its first byte and body.
function mqttParse(first, body) {
  const type = first >> 4;
  const flags = first & 0x0f;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const need = (n) => {
    if (body.length < n) throw new Error(`packet type ${type} of ${body.length} bytes`);
  };
  switch (type) {
    case MQTT.CONNACK:
      need(2);
      return { type: "connack", sessionPresent: !!(body[0] & 1), code: body[1] };
    case MQTT.PUBLISH: {
      const qos = (flags >> 1) & 3;
      if (qos === 3) throw new Error("PUBLISH with QoS 3");
      need(2);
      const tlen = view.getUint16(0);
      let at = 2 + tlen;
      need(at);
      const topic = new TextDecoder("utf-8", { fatal: true }).decode(body.subarray(2, at));
      let id = null;
      if (qos > 0) {
        need(at + 2);
        id = view.getUint16(at);
        at += 2;
      }
      return { type: "publish", topic, qos, id, retain: !!(flags & 1), dup: !!(flags & 8),
               payload: body.slice(at) };
    }
    case MQTT.SUBACK:
      need(2);
      return { type: "suback", id: view.getUint16(0), codes: Array.from(body.subarray(2)) };
    case MQTT.PUBACK: case MQTT.PUBREC: case MQTT.PUBREL: case MQTT.PUBCOMP: case MQTT.UNSUBACK:
      need(2);
      return { type: Object.keys(MQTT).find((k) => MQTT[k] === type).toLowerCase(), id: view.getUint16(0) };
    case MQTT.PINGRESP:
      return { type: "pingresp" };
    default:
      throw new Error(`unexpected packet type ${type} from the gate`);
  }
}

// Request topics sent and not yet answered: a PUBLISH on one of them is its
// reply (mqant answers on the request topic), anything else is a push.
const pending = new Map(); // topic -> count
let pings = 0;

function setPings(n) {
  pings = n;
  $("pings").textContent = `${n} ping${n === 1 ? "" : "s"}`;
}

function mqttSend(topic, payload) {
  if (!ws || ws.readyState !== WebSocket.OPEN || mode !== "mqtt" || !ws.mqttReady) {
    log("not connected (MQTT)", "error");
    return;
  }
  let bytes;
  try {
    bytes = mqttPublish(topic, payload);
  } catch (e) {
    log(`cannot send: ${e.message}`, "error");
    return;
  }
  ws.send(bytes);
  // Exactly three segments, the third non-empty: a request (one reply comes).
  const seg = topic.split("/");
  if (seg.length === 3 && seg[2] !== "") pending.set(topic, (pending.get(topic) || 0) + 1);
  log(`→ ${topic}: ${payload}`, "out");
}

function onMqttPacket(sock, p) {
  switch (p.type) {
    case "connack":
      if (p.code !== 0) {
        log(`CONNACK refused: ${CONNACK_CODES[p.code] || `code ${p.code}`}`, "error");
        sock.close(1000);
        return;
      }
      sock.mqttReady = true;
      setStatus("connected (MQTT)");
      log(`MQTT connected to ${sock.gateUrl} as ${sock.clientId}`);
      return;
    case "publish": {
      const text = decoder.decode(p.payload);
      const n = pending.get(p.topic) || 0;
      if (n > 0) {
        if (n === 1) pending.delete(p.topic);
        else pending.set(p.topic, n - 1);
        let err = "";
        try {
          const w = JSON.parse(text);
          if (w && typeof w.Error === "string") err = w.Error;
        } catch (_) { /* a raw reply (HD_Raw): not the wrapper */ }
        log(`← ${p.topic}: ${text}`, err ? "error" : "reply");
      } else {
        log(`[push] ${p.topic}: ${text}`, "push");
      }
      return;
    }
    case "pingresp":
      setPings(pings + 1);
      return;
    case "suback":
      log(`SUBACK #${p.id}: ${p.codes.join(", ")}`);
      return;
    default:
      log(`${p.type.toUpperCase()} #${p.id}`);
  }
}

function connectMqtt(url) {
  mode = "mqtt";
  const clientId = $("client-id").value.trim();
  const keepAlive = Math.min(0xffff, Math.max(1, parseInt($("keepalive").value, 10) || 30));
  const sock = new WebSocket(url, "mqtt");
  sock.binaryType = "arraybuffer";
  sock.clientId = clientId;
  sock.gateUrl = url;
  sock.mqttReady = false;
  const stream = new MqttDecoder();
  ws = sock;
  pending.clear();
  setPings(0);
  setStatus("connecting…");
  sock.onopen = () => {
    sock.send(mqttConnect(clientId, keepAlive));
    // A PINGREQ every half keep-alive: the gate closes a client silent for 1.5×.
    heartbeat = setInterval(() => sock.send(MQTT_PINGREQ), (keepAlive * 1000) / 2);
  };
  sock.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      log("unexpected text message", "error");
      return;
    }
    let packets;
    try {
      packets = stream.push(ev.data);
    } catch (e) {
      log(`bad MQTT stream: ${e.message}`, "error");
      sock.close(1002);
      return;
    }
    for (const p of packets) onMqttPacket(sock, p);
  };
  sock.onerror = () => log("connection error (is the gate running with [network.mqtt] enabled?)", "error");
  sock.onclose = (ev) => {
    clearInterval(heartbeat);
    if (ws === sock) ws = null;
    setStatus("disconnected");
    const after = sock.sentDisconnect ? " after DISCONNECT" : "";
    log(`closed${after}: code ${ev.code}${ev.reason ? ` (${ev.reason})` : ""}`);
  };
}

// MQTT: DISCONNECT, then the WebSocket close. The gate closes the connection
// as soon as it reads DISCONNECT, so the browser may report 1006 (no close
// frame came back) rather than 1000.
function disconnect() {
  if (mode === "mqtt" && ws.readyState === WebSocket.OPEN) {
    ws.send(MQTT_DISCONNECT);
    ws.sentDisconnect = true;
  }
  ws.close(1000);
}

// --- forms ---------------------------------------------------------------

function onSubmit(id, handler) {
  $(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    handler();
  });
}

onSubmit("connect", () => {
  if (ws) disconnect();
  else if ($("proto").value === "mqtt") connectMqtt($("url").value.trim());
  else connect($("url").value.trim());
});
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

onSubmit("publish", () => mqttSend($("topic").value.trim(), $("payload").value));
onSubmit("mqtt-options", () => {});

// The protocol picks the forms shown and the URL's path: mqant's JavaScript
// clients connect on /mqtt (the gate's [network.ws] mqtt_path).
function showProtocol() {
  const mqtt = $("proto").value === "mqtt";
  $("due-forms").hidden = mqtt;
  $("mqtt-forms").hidden = !mqtt;
  const url = $("url").value;
  if (mqtt && /\/$/.test(url)) $("url").value = `${url}mqtt`;
  if (!mqtt && /\/mqtt$/.test(url)) $("url").value = url.slice(0, -4);
}
$("proto").addEventListener("change", showProtocol);

$("url").value = `ws://${location.hostname || "127.0.0.1"}:3554/`;
$("client-id").value = `web-${Math.random().toString(36).slice(2, 10)}`;
showProtocol();
setStatus("disconnected");
