"""Issue 21 items 1-4 through the real proxy: identifiers the detectors find (phonenumbers, python-stdnum, names,
encoded emails), external referrers cut to their origin, user agents by ua-parser with crawlers marked, and the
query allow-list, in the access log; the origin still gets the request as sent (C2, C8, C9)."""

from __future__ import annotations

from tests.helpers import REPO, request, start_proxy, tls_context

IOS_FACEBOOK = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;"
                "FBLC/en_US;FBOP/5]")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"


def test_identifiers_referrers_and_agents_in_the_shipped_log(tmp_path, origin):
    p = start_proxy(tmp_path / "p", origin.url, config=REPO / "filters.yaml")
    ctx = tls_context(p.ca)
    sent = ["/contact?note=call+555-123-4567", "/pay?acct=GB82+WEST+1234+5698+7654+32", "/f?v=536-22-1234",
            "/buy?n=4111-1111-1111-1111", "/signup?fname=Jane&plan=gold", "/m?to=jane%2540example.com",
            "/m?to=amFuZUBleGFtcGxlLmNvbQ%3D%3D", "/j?tel2=%EF%BC%90%EF%BC%99%EF%BC%90-1234-5678"]
    try:
        for path in sent:
            request(p.port, path, tls=ctx)
        request(p.port, "/landing", tls=ctx, headers={
            "Referer": "https://www.google.com/search?q=john+doe+555-123-4567", "User-Agent": GOOGLEBOT})
        request(p.port, "/next", tls=ctx, headers={"Referer": "https://localhost/products?q=watch",
                                                   "User-Agent": GPTBOT})
        request(p.port, "/fb", tls=ctx, headers={"User-Agent": IOS_FACEBOOK})
        records = p.log_records(wait_for=len(sent) + 3)
    finally:
        p.stop()
    text = (p.log_dir / "access.jsonl").read_text()
    for secret in ("555-123-4567", "WEST", "536-22-1234", "4111", "Jane", "jane", "amFuZU", "1234-5678",
                   "john", "doe"):
        assert secret not in text, secret
    paths = [r["path"] for r in records]
    assert paths[:8] == ["/contact?note=call%20[phone]", "/pay?acct=[iban]", "/f?v=[ssn]", "/buy?n=[card]",
                         "/signup?fname=[redacted]&plan=gold", "/m?to=[email]", "/m?to=[email]", "/j?tel2=[phone]"]
    # the origin gets the request as sent: the logs are what is reduced
    assert [r.path for r in origin.requests[:len(sent)]] == sent
    landing, internal, fb = records[-3:]
    assert landing["referrer"] == "https://www.google.com"  # external: its origin only
    assert internal["referrer"] == "https://localhost/products?q=watch"  # the site's own Host: through the rules
    assert (landing["user_agent"], landing["bot"]) == ("Googlebot 2 (bot)", True)
    assert (internal["user_agent"], internal["bot"]) == ("GPTBot 1 (bot)", True)
    assert fb["user_agent"] == "Facebook (iOS)" and "bot" not in fb


def test_allowlist_strip_query_custom_detector_and_bot_beacons(tmp_path, origin):
    cfg = tmp_path / "filters.yaml"
    cfg.write_text("""version: 1
logging: {format: json, query_allowlist: [q, "utm_*"]}
referrer: {external: strip_query}
detectors:
  phone_regions: [JP, US]
  custom:
    - {id: member_number, pattern: 'M-[0-9]{8}', action: redact, why: "001 §9.2.1"}
beacons: {bots: drop}
""")
    p = start_proxy(tmp_path / "p", origin.url, config=cfg)
    ctx = tls_context(p.ca)
    try:
        request(p.port, "/search?q=watch&page=2&utm_source=news&color=red", tls=ctx,
                headers={"Referer": "https://news.example/a/b?id=5&q=jane"})
        request(p.port, "/q?q=member+M-12345678", tls=ctx)
        bot = request(p.port, "/g/collect?v=2&tid=G-TEST1&cid=111.222&en=page_view", tls=ctx, method="POST",
                      headers={"User-Agent": GOOGLEBOT})
        human = request(p.port, "/g/collect?v=2&tid=G-TEST1&cid=111.222&en=page_view", tls=ctx, method="POST",
                        headers={"User-Agent": IOS_FACEBOOK})
        records = p.log_records(wait_for=4)
    finally:
        p.stop()
    assert records[0]["path"] == "/search?q=watch&utm_source=news"  # every other parameter left out of the log
    assert records[0]["referrer"] == "https://news.example/a/b"
    assert records[1]["path"] == "/q?q=member%20[member_number]"
    assert bot.status == 204 and human.status < 300
    got = [r.path for r in origin.requests]
    assert got[0] == "/search?q=watch&page=2&utm_source=news&color=red"  # forwarded whole
    assert sum(1 for g in got if g.startswith("/g/collect")) == 1  # only the person's beacon reached the collector
