// MQTT.js (npm `mqtt`, pinned 5.10.4, installed in tests/clients/node_modules)
// against ringgate's mqant-style MQTT listener, written from the protocol
// description: requests are PUBLISHes to <service>/<handler>/<msgid>, answered
// by a QoS 0 PUBLISH on the same topic carrying {"Trace","Error","Result"};
// pushes arrive without subscribing. Needs the Echo node (see mqtt_check.py).
//
//   node tests/clients/mqtt_js_check.mjs --port N [--host 127.0.0.1]
//
// Prints PASS/FAIL per scenario; exits 1 if any failed, 2 if mqtt is missing.

let mqtt;
try {
  mqtt = (await import("mqtt")).default;
} catch (e) {
  console.log(`FAIL setup: MQTT.js is not installed (npm install --prefix tests/clients mqtt@5.10.4): ${e.message}`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const host = arg("--host", "127.0.0.1");
const port = Number(arg("--port"));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(p, ms, what) {
  return Promise.race([
    p,
    new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: nothing within ${ms} ms`)), ms)),
  ]);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// One connection; every PUBLISH it receives is queued.
async function open(opts = {}) {
  const client = mqtt.connect({
    host, port, protocol: "mqtt", protocolVersion: 4, reconnectPeriod: 0,
    connectTimeout: 5000, clientId: `js-${Math.random().toString(16).slice(2, 10)}`, ...opts,
  });
  const queue = [];
  const waiters = [];
  client.on("message", (topic, payload, packet) => {
    const m = { topic, payload, qos: packet.qos };
    const w = waiters.shift();
    if (w) w(m); else queue.push(m);
  });
  await withTimeout(new Promise((res, rej) => {
    client.once("connect", res);
    client.once("error", rej);
  }), 5000, "CONNACK");
  const next = (ms = 3000) => withTimeout(new Promise((res) => {
    if (queue.length) res(queue.shift()); else waiters.push(res);
  }), ms, "PUBLISH");
  return { client, next };
}

async function nextOn(c, topic) {
  const m = await c.next();
  check(m.topic === topic, `expected a PUBLISH on ${topic}, got ${m.topic}: ${m.payload}`);
  check(m.qos === 0, `gate published at QoS ${m.qos}`);
  return m.payload;
}

function wrapper(buf) {
  const w = JSON.parse(buf.toString());
  check(/^[0-9a-f]{16}$/.test(w.Trace), `Trace ${w.Trace}`);
  check(typeof w.Error === "string" && "Result" in w, `wrapper ${buf}`);
  return w;
}

const close = (c) => new Promise((r) => c.client.end(false, {}, r));

const scenarios = {
  async connect() {
    const c = await open();
    await close(c);
    return "CONNACK accepted, clean end";
  },
  async request() {
    const c = await open();
    try {
      c.client.publish("Echo/HD_Echo/1", '{"js":true}');
      const w = wrapper(await nextOn(c, "Echo/HD_Echo/1"));
      check(w.Error === "", `Error ${w.Error}`);
      check(w.Result.topic === "Echo/HD_Echo/1" && w.Result.body === '{"js":true}', JSON.stringify(w.Result));
      c.client.publish("Echo/HD_Err/2", "{}");
      const e = wrapper(await nextOn(c, "Echo/HD_Err/2"));
      check(e.Error === "boom", `Error ${e.Error}`);
    } finally { await close(c); }
    return "Result and Error";
  },
  async push() {
    const c = await open();
    try {
      c.client.publish("Echo/HD_Push/1", "{}");
      const p = await nextOn(c, "Echo/OnPush");
      check(p.toString() === "push-body", `push ${p}`);
      const w = wrapper(await nextOn(c, "Echo/HD_Push/1"));
      check(w.Result === "pushed", JSON.stringify(w));
    } finally { await close(c); }
    return "push without subscribing";
  },
  async qos1() {
    const c = await open();
    try {
      // The callback runs when the PUBACK arrives.
      await withTimeout(new Promise((res, rej) =>
        c.client.publish("Echo/HD_Echo/q1", "{}", { qos: 1 }, (err) => (err ? rej(err) : res()))), 3000, "PUBACK");
      const w = wrapper(await nextOn(c, "Echo/HD_Echo/q1"));
      check(w.Error === "", `Error ${w.Error}`);
      await withTimeout(new Promise((res, rej) =>
        c.client.publish("Echo/HD_Log", "js qos2", { qos: 2 }, (err) => (err ? rej(err) : res()))), 3000, "PUBCOMP");
    } finally { await close(c); }
    return "PUBACK, PUBCOMP";
  },
  async ping() {
    // keepalive 1 s: MQTT.js pings and closes the connection itself if no
    // PINGRESP comes back in time.
    const c = await open({ keepalive: 1 });
    let pingresps = 0, closed = false;
    c.client.on("packetreceive", (p) => { if (p.cmd === "pingresp") pingresps++; });
    c.client.on("close", () => { closed = true; });
    try {
      await sleep(3500);
      check(!closed, "closed while pinging");
      check(pingresps >= 2, `${pingresps} PINGRESP in 3.5 s`);
    } finally { await close(c); }
    return `${pingresps} PINGRESP`;
  },
};

let failed = 0;
const { readFileSync } = await import("node:fs");
const mqttVersion = JSON.parse(readFileSync(new URL("./node_modules/mqtt/package.json", import.meta.url))).version;
console.log(`MQTT.js ${mqttVersion} on node ${process.version}`);
for (const [name, fn] of Object.entries(scenarios)) {
  try {
    const detail = await fn();
    console.log(`PASS ${name} (${detail})`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
