// Drives the vendors' own Node SDKs at a local collector (argv[2] = its base URL), each with the canary
// identifiers of tests/unit/vendors/beacons.py, so the recordings show what current SDKs really send.
// Run by scripts/record-sdk-beacons; never against a real vendor.
import { createRequire } from "node:module";
const require = createRequire(process.cwd() + "/");
const base = process.argv[2];
const url = new URL(base);
const only = process.argv[3] || "";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mark = async (name) => { await fetch(`${base}/__mark?sdk=${encodeURIComponent(name)}`); };

const runs = {
  async "posthog-node"() {
    const { PostHog } = require("posthog-node");
    const ph = new PostHog("phc_test_key", { host: base, flushAt: 1, flushInterval: 0 });
    ph.capture({ distinctId: "CANARYUID", event: "purchase",
                 properties: { $email: "canary.person@example.com", plan: "gold", $ip: "203.0.113.77",
                               $current_url: "https://shop.example/p?gclid=CANARYGCLID" } });
    ph.identify({ distinctId: "CANARYUID", properties: { email: "canary.person@example.com", name: "Canary Person" } });
    await ph.shutdown();
  },
  async "mixpanel-node"() {
    const Mixpanel = require("mixpanel");
    const mp = Mixpanel.init("mp_token", { host: url.hostname, port: Number(url.port), protocol: "http" });
    await new Promise((r) => mp.track("purchase", { distinct_id: "CANARYUID", ip: "203.0.113.77",
                                                   $email: "canary.person@example.com", plan: "gold" }, r));
    await new Promise((r) => mp.people.set("CANARYUID", { $email: "canary.person@example.com",
                                                          $phone: "+81 90-1234-5678", plan: "gold" }, r));
  },
  async "segment-analytics-node"() {
    const { Analytics } = require("@segment/analytics-node");
    const a = new Analytics({ writeKey: "seg_key", host: base, flushAt: 1, maxEventsInBatch: 1 });
    a.track({ userId: "CANARYUID", anonymousId: "CANARYCID", event: "Order Completed",
              properties: { plan: "gold", email: "canary.person@example.com" },
              context: { ip: "203.0.113.77", traits: { email: "canary.person@example.com" } } });
    a.identify({ userId: "CANARYUID", traits: { email: "canary.person@example.com", phone: "+81 90-1234-5678",
                                                name: "Canary Person", plan: "gold" } });
    await a.closeAndFlush({ timeout: 5000 });
  },
  async "amplitude-analytics-node"() {
    const amp = require("@amplitude/analytics-node");
    await amp.init("amp_key", { serverUrl: `${base}/2/httpapi`, flushQueueSize: 1, flushIntervalMillis: 100 }).promise;
    amp.track("purchase", { plan: "gold", email: "canary.person@example.com" },
              { user_id: "CANARYUID", device_id: "CANARYDID", ip: "203.0.113.77" });
    await amp.flush().promise;
  },
  async "snowplow-node-tracker"() {
    const sp = require("@snowplow/node-tracker");
    const tracker = sp.newTracker({ namespace: "ns", appId: "shop", encodeBase64: true },
                                  { endpoint: base, eventMethod: "post", bufferSize: 1 });
    tracker.setUserId("CANARYUID");
    tracker.setDomainUserId?.("CANARYCID");
    tracker.setIpAddress?.("203.0.113.77");
    tracker.track(sp.buildPageView({ pageUrl: "https://shop.example/p?email=canary.person%40example.com",
                                     pageTitle: "Product" }),
                  [{ schema: "iglu:com.example/user/jsonschema/1-0-0",
                     data: { email: "canary.person@example.com", plan: "gold" } }]);
    await (tracker.flush?.() ?? sleep(500));
    await sleep(500);
  },
  async "matomo-tracker"() {
    // Matomo's own Node tracker: one GET per hit, and the bulk POST {"requests": ["?...", ...]}.
    const MatomoTracker = require("matomo-tracker");
    const m = new MatomoTracker(1, `${base}/matomo.php`);
    m.on("error", (e) => console.error(`matomo-tracker: ${e}`));
    const hit = { url: "https://shop.example/p?email=canary.person%40example.com&gclid=CANARYGCLID",
                  action_name: "purchase", uid: "CANARYUID", _id: "ca11ab1eca11ab1e", cip: "203.0.113.77",
                  ua: "Mozilla/5.0 (X11; Linux x86_64) CANARYUA", urlref: "https://search.example/?fbclid=CANARYFBCLID",
                  _cvar: JSON.stringify({ 1: ["plan", "gold"], 2: ["email", "canary.person@example.com"] }) };
    m.track(hit);
    await sleep(300);
    m.trackBulk([hit, { ...hit, action_name: "checkout", e_c: "shop", e_a: "pay", e_n: "canary.person@example.com" }]);
    await sleep(500);
  },
  async "universal-analytics"() {
    // Measurement Protocol v1 from Node: /collect, and /batch when batching.
    const ua = require("universal-analytics");
    const send = (v) => new Promise((r) => v.send(r));
    const visitor = ua("UA-12345-1", "CANARYCID", { hostname: base, uid: "CANARYUID", strictCidFormat: false });
    await send(visitor.pageview({ dp: "/p?email=canary.person%40example.com", dh: "shop.example",
                                  dr: "https://search.example/?gclid=CANARYGCLID", uip: "203.0.113.77",
                                  ua: "Mozilla/5.0 CANARYUA", dt: "purchase" }));
    const batched = ua("UA-12345-1", "CANARYCID", { hostname: base, uid: "CANARYUID", strictCidFormat: false,
                                                   enableBatching: true, batchSize: 2 });
    batched.event({ ec: "shop", ea: "purchase", el: "gold", uip: "203.0.113.77" });
    await send(batched.event({ ec: "shop", ea: "pay", el: "canary.person@example.com" }));
  },
};

for (const [name, run] of Object.entries(runs)) {
  if (only && name !== only) continue;
  await mark(name);
  try {
    await run();
  } catch (e) {
    console.error(`${name}: ${e}`);
    process.exitCode = 1;
  }
  await sleep(300);
}
await mark("");
