// The demo's analytics tags: one beacon per vendor, in each vendor's own format, sent to first-party paths
// the way server-side tagging does. They carry a member id, an email, an IP override and the page URL (with
// its click id): privproxy must strip all of it before the "vendor" (the demo origin's collector) sees it.
(async function () {
  const cid = "1234567890.1700000000", uid = "member-4711", email = "jane.doe@example.com";
  const ip = "203.0.113.77", page = location.href, ref = document.referrer || "";
  const enc = (o) => new URLSearchParams(o).toString();
  let sent = 0;
  async function beacon(url, body, type) {
    const init = {method: body === undefined ? "GET" : "POST", keepalive: true, credentials: "include"};
    if (body !== undefined) { init.body = body; init.headers = {"Content-Type": type}; }
    try { await fetch(url, init); sent++; } catch (e) { console.log("beacon failed", url, e); }
  }
  // Google Analytics 4 (gtag.js): a GET hit, then a POST with one hit per line sharing the URL's parameters
  await beacon("/g/collect?" + enc({v: "2", tid: "G-DEMO", gcs: "G111", cid, uid, sid: "1700000000", dl: page,
    dr: ref, en: "page_view", sr: "1920x1080", _uip: ip, "ep.plan": "gold_plan"}));
  await beacon("/g/collect?" + enc({v: "2", tid: "G-DEMO", cid}),
    [enc({en: "scroll", "epn.percent_scrolled": "90"}), enc({en: "sign_up", "ep.contact": email})].join("\r\n"),
    "text/plain;charset=UTF-8");
  // Segment (analytics.js sends JSON as text/plain)
  await beacon("/v1/t", JSON.stringify({type: "track", event: "checkout_step", userId: uid,
    anonymousId: "anon-5f1c-4711", properties: {plan: "gold_plan", email},
    context: {page: {url: page, referrer: ref}, ip, userAgent: navigator.userAgent}}), "text/plain");
  // Mixpanel (data= base64 JSON)
  await beacon("/track/?ip=1&verbose=1", enc({data: btoa(JSON.stringify({event: "page_view", properties: {
    token: "demo-token", distinct_id: uid, $device_id: "dev-5f1c-4711", $current_url: page, email}}))}),
    "application/x-www-form-urlencoded");
  // Snowplow (tp2 payload_data)
  await beacon("/com.snowplowanalytics.snowplow/tp2", JSON.stringify({
    schema: "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    data: [{e: "pv", url: page, refr: ref, page: "page_view", duid: "d5f1c4711", uid, tv: "js-3.17.0",
            p: "web", ip}]}), "application/json; charset=UTF-8");
  // Matomo (POST form)
  await beacon("/matomo.php", enc({idsite: "1", rec: "1", action_name: "page_view", url: page, urlref: ref,
    _id: "5f1c5f1c5f1c4711", uid, cip: ip}), "application/x-www-form-urlencoded; charset=UTF-8");
  // Amplitude (HTTP API v2)
  await beacon("/2/httpapi", JSON.stringify({api_key: "demo-key", events: [{event_type: "page_view",
    user_id: uid, device_id: "dev-5f1c-4711", ip, event_properties: {plan: "gold_plan"},
    user_properties: {email}}]}), "application/json");
  // PostHog (posthog-js: gzip body, compression=gzip-js, no Content-Encoding header)
  const json = JSON.stringify([{event: "page_view", properties: {distinct_id: uid, $current_url: page,
    $ip: ip, email, token: "phc_demo"}}]);
  const gz = await new Response(new Blob([json]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer();
  await beacon("/e/?compression=gzip-js&ver=1.200.0", gz, "text/plain");
  // Meta Pixel (image GET; ud[em] is the SHA-256 of the email)
  await beacon("/tr?" + enc({id: "123456789", ev: "PageView", dl: page, rl: ref,
    fbp: "fb.1.1700000000.5647382910", "ud[em]": "f1b1a8f0c6bd3e3f5f1f9d3c1c4e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e",
    external_id: uid}));
  // Adobe Analytics (image request)
  await beacon("/b/ss/demo/1/JS-2.22.0/s12345?" + enc({AQB: "1", pageName: "page_view", g: page, r: ref,
    vid: uid, v1: email, AQE: "1"}));
  // Plausible
  await beacon("/api/event", JSON.stringify({n: "pageview", u: page, d: location.hostname, r: ref || null,
    p: {contact: email}}), "text/plain");
  document.getElementById("beacons").textContent = `sent ${sent} beacons`;
  document.title = `beacons sent: ${sent}`;
})();
