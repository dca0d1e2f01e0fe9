"""[report] The public disclosure generated from the rules in force, in English or Japanese (C7).

Who publishes it (filters.yaml `disclosure:`), which items each kind of record keeps (access logs, analytics
beacons, linked member records), how each is processed, how long it is kept, and which settings and rules keep
each promise of the company's policy (the promises and clauses come from the company's controls file). build()
makes a plain model from a Policy; markdown() and html() render it, so a rule change always changes the notice.

Every statement is derived from a setting and must stay true for it: pseudonymized records are personal data
(GDPR Art. 4(5); personal information under the APPI), and the time kept is the precision the configured log
format writes. The Japanese text is written as Japanese privacy notices are (敬体, 当社は…), not translated
word by word.
"""

from __future__ import annotations

import datetime
import html as htmllib
from dataclasses import dataclass

from privproxy import protections, vendors
from privproxy.policy import Policy
from privproxy.vendors.base import CONFIGURABLE_ROLES

FORMATS = ("md", "html")
LANGS = ("en", "ja")

PERIOD = {"en": {"hourly": "every hour", "daily": "every day", "weekly": "every week"},
          "ja": {"hourly": "1時間ごと", "daily": "1日ごと", "weekly": "1週間ごと"}}

ROLE_TITLES = {
    "client_id": ("Visitor (client) ids", "閲覧者（クライアント）ID"),
    "session_id": ("Session ids", "セッション ID"),
    "device_id": ("Device and advertising ids", "端末 ID・広告 ID"),
    "user_id": ("The site's own member or user id", "当サイトの会員 ID・ユーザー ID"),
    "ip": ("IP addresses inside the beacon", "計測データに含まれる IP アドレス"),
    "user_agent": ("User-agent strings inside the beacon", "計測データに含まれるユーザーエージェント"),
    "contact": ("E-mail addresses, phone numbers, names and postal addresses (clear or hashed)",
                "メールアドレス、電話番号、氏名、住所（平文・ハッシュ値とも）"),
    "click_id": ("Ad click ids (gclid, fbclid, msclkid, ...)", "広告クリック ID（gclid、fbclid、msclkid など）"),
    "fingerprint": ("High-entropy client hints and fingerprints", "詳細なクライアントヒント・フィンガープリント"),
    "device": ("Screen and viewport sizes", "画面・表示領域のサイズ"),
}
assert set(ROLE_TITLES) == set(CONFIGURABLE_ROLES)

DETECTOR_TITLES = {
    "email": ("e-mail addresses", "メールアドレス"), "phone": ("phone numbers", "電話番号"),
    "ip": ("IP addresses", "IP アドレス"), "card": ("payment card numbers", "クレジットカード番号"),
    "mynumber": ("Individual Numbers (My Number)", "個人番号（マイナンバー）"),
    "corporate_number": ("corporate numbers", "法人番号"), "iban": ("bank account numbers (IBAN)", "銀行口座番号（IBAN）"),
    "ssn": ("US Social Security numbers", "米国社会保障番号"), "vat": ("VAT identification numbers", "付加価値税の登録番号"),
    "jwt": ("signed tokens (JWT)", "署名付きトークン（JWT）"),
}

# What each action does, in a few words; the glossary section says what they mean with the settings in force.
ACTION_WORDS = {
    "en": {"drop": "removed", "redact": "replaced by a marker", "hash": "pseudonymized", "truncate": "truncated",
           "generalize": "generalized", "keep": "kept unchanged"},
    "ja": {"drop": "削除", "redact": "固定の文字列に置換", "hash": "仮名化", "truncate": "切り捨て", "generalize": "一般化",
           "keep": "変更せず保存"},
}

# What privproxy enforces for each control id (the ids rules name in `controls:`), whatever company runs it.
CONTROL_TITLES = {
    "C1": ("Encrypted transport", "通信の暗号化"),
    "C2": ("Access logs for statistics, with addresses truncated and identifiers removed or pseudonymized",
           "統計用のアクセスログ（IP アドレスの切り捨て、識別子の削除・仮名化）"),
    "C3": ("Logs useful for running the servers", "サーバー運用に必要なログ"),
    "C4": ("Cookie identifiers not used to identify visitors", "Cookie の識別子を個人の識別に用いないこと"),
    "C5": ("Linkage only for members who consented", "同意した会員に限った連携"),
    "C6": ("No identifiers to third-party analytics without consent", "同意のない外部解析サービスへの識別子の提供の禁止"),
    "C7": ("Publication of the items kept and their processing", "保存項目と加工方法の公表"),
    "C8": ("IP addresses and cookie identifiers treated as personal information",
           "IP アドレス・Cookie 識別子の個人情報としての取扱い"),
    "C9": ("Minimum automatic acquisition", "自動取得する情報の最小化"),
    "C10": ("No special-care information through analytics", "要配慮個人情報を取得しないこと"),
    "C11": ("Disposal when the purpose is met", "利用目的達成後の廃棄"),
    "C12": ("Disclosure, correction, deletion and suspension requests", "開示・訂正・削除・利用停止への対応"),
    "C13": ("A visitor's refusal respected", "拒否の意思の尊重"),
    "C14": ("Transfers abroad governed by region", "地域に応じた外国への提供の管理"),
    "C15": ("Security of the proxy itself", "本システム自体の安全管理"),
}


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    title: str
    controls: tuple[str, ...]
    text: tuple[str, ...] = ()
    table: Table | None = None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    title: str
    intro: tuple[str, ...]
    warnings: tuple[str, ...]
    sections: tuple[Section, ...]
    lang: str = "en"


class _L:
    """The language a report is written in: `t(en, ja)` picks the sentence written for its readers."""

    def __init__(self, lang: str) -> None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}: use {' or '.join(LANGS)}")
        self.lang = lang
        self.ja = lang == "ja"

    def t(self, en: str, ja: str) -> str:
        return ja if self.ja else en

    def pick(self, pair: tuple[str, str]) -> str:
        return pair[1] if self.ja else pair[0]

    def action(self, action: str) -> str:
        return ACTION_WORDS[self.lang][action]

    def join(self, items: list[str] | tuple[str, ...]) -> str:
        return ("、" if self.ja else ", ").join(items)

    def days(self, n: int | None) -> str:
        if n is None:
            return self.t("kept without a time limit", "期間の定めなく保存します")
        return self.t(f"deleted after {n} day{'s' if n != 1 else ''}", f"{n}日を経過した後に削除します")


def _heads(lang: _L, en: str, ja: str) -> tuple[str, ...]:
    """Table headers, `|`-separated."""
    return tuple(lang.t(en, ja).split("|"))


def processing(action: str, lang: str = "en") -> str:
    """A few words for the action; the glossary section says what they mean with the settings in force."""
    return ACTION_WORDS[lang][action]


def _ruled(lang: _L, rules: list) -> str:
    return lang.join([f"`{r.id}`（{lang.action(r.action)}）" if lang.ja else f"`{r.id}` ({lang.action(r.action)})"
                      for r in rules])


def _time_precision(p: Policy, lang: _L) -> str:
    """The time as the configured access-log format writes it (formats.iso: milliseconds; clf_time: seconds)."""
    fmt = p.logging.format
    if fmt == "json":
        return lang.t("kept to the millisecond (UTC)", "協定世界時（UTC）でミリ秒単位まで保存")
    if fmt == "both":
        return lang.t("kept to the millisecond (UTC) in the JSON log and to the second in the Combined log",
                      "協定世界時（UTC）で、JSON 形式のログではミリ秒単位まで、Combined 形式のログでは秒単位まで保存")
    return lang.t("kept to the second (UTC)", "協定世界時（UTC）で秒単位まで保存")


def _glossary(p: Policy, lang: _L) -> Section:
    t = p.truncation
    meaning = {
        "drop": lang.t("the item is deleted before the record is written or the data is forwarded",
                       "記録の保存やデータの送信の前に、その項目を削除します"),
        "redact": lang.t("the value is replaced by a fixed text such as `[redacted]`",
                         "値を `[redacted]` などの固定の文字列に置き換えます"),
        "hash": lang.t("the value is replaced by a keyed hash (HMAC-SHA256) of the same shape, which the proxy "
                       "instances sharing the key compute alike, so counts of unique visitors per period still "
                       "work; ", "値を鍵付きハッシュ（HMAC-SHA256）による別の値（仮名）に置き換えます。同じ鍵を共有する各サーバーは同じ仮名を"
                                 "算出するため、期間ごとの訪問者数は集計できます。") + _keys_text(p, lang),
        "truncate": lang.t(f"IP addresses keep only their first {t.ipv4_prefix} bits (IPv4, e.g. `203.0.113.0`) "
                           f"or {t.ipv6_prefix} bits (IPv6)",
                           f"IP アドレスは先頭の {t.ipv4_prefix} ビット（IPv4。例：`203.0.113.0`）または "
                           f"{t.ipv6_prefix} ビット（IPv6）のみを残し、残りを切り捨てます"),
        "generalize": lang.t("user agents keep the browser family and major version and the operating system "
                             "family; screen and viewport sizes are rounded to 100 pixels; sensitive page addresses "
                             "become templates",
                             "ユーザーエージェントはブラウザの種類とメジャーバージョン、OS の種類のみとし、画面・表示領域のサイズは "
                             "100 ピクセル単位に丸め、配慮を要するページのアドレスはひな形に置き換えます"),
    }
    rows = tuple((lang.action(action), text) for action, text in meaning.items())
    return Section(lang.t("How each kind of processing works", "加工の方法"), (), (),
                   Table(_heads(lang, "processing|meaning", "加工|内容"), rows))


def _keys_text(p: Policy, lang: _L) -> str:
    """What the pseudonymization keys allow in the mode configured, said plainly (C11)."""
    return _period_keys_text(p, lang) + lang.t(
        "; each destination (the access log, the site's own cookies, each analytics provider) has a key of its own "
        "derived from the period's key, so one identifier gets unrelated pseudonyms at two destinations and they "
        "cannot join their records by it",
        "また、送り先（アクセスログ、当サイト自身の Cookie、各解析サービス）ごとに別の鍵を使うため、同じ識別子でも送り先ごとに無関係な仮名"
        "となり、送り先どうしで記録を突き合わせることはできません。")


def _period_keys_text(p: Policy, lang: _L) -> str:
    every = PERIOD[lang.lang][p.pseudonyms.rotation]
    if p.pseudonyms.key_file:
        return lang.t(
            f"the key changes {every}: each period's key is derived one way from the previous one, which is then "
            "erased from every proxy instance and, when the shared key file is advanced at the start of the "
            "period, from that file too, so a past period's pseudonyms can no longer be recomputed and the "
            "same visitor cannot be followed from one period to the next",
            f"鍵は{every}に更新します。新しい鍵は直前の鍵から一方向にのみ導出し、直前の鍵は各サーバーから（共有の鍵ファイルを期間の"
            "始めに更新する場合はそのファイルからも）消去するため、過去の期間の仮名は再計算できず、期間をまたいで同じ閲覧者を追跡する"
            "ことはできません。")
    return lang.t(
        f"the key changes {every}, but each period's key is derived from a fixed secret held by the proxy "
        "instances and their operators (without one, each process uses a random key it never stores): "
        "whoever holds that secret can recompute the pseudonyms of any past period and follow a visitor "
        "from one period to the next",
        f"鍵は{every}に更新しますが、各期間の鍵はサーバーとその運用者が保持する固定の秘密情報から導出します（秘密情報を設定しない"
        "場合は、保存しない一時的な鍵を使います）。そのため、この秘密情報を保持する者は過去の期間の仮名を再計算でき、期間をまたいで"
        "同じ閲覧者を追跡することができます。")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _ip_text(p: Policy, lang: _L) -> str:
    t = p.truncation
    text = lang.t(f"truncated to the first {t.ipv4_prefix} bits (IPv4) or {t.ipv6_prefix} bits (IPv6) before "
                  "anything is stored, logged or forwarded; the full address is never written",
                  f"保存・記録・送信の前に、先頭の {t.ipv4_prefix} ビット（IPv4）または {t.ipv6_prefix} ビット（IPv6）"
                  "を残して切り捨てます。完全な IP アドレスは記録しません")
    if p.client_ip.trusted_proxies:
        nets = ", ".join(f"`{n}`" for n in p.client_ip.trusted_proxies)
        return text + lang.t(f". Forwarding headers are believed only from this site's own proxies ({nets})",
                             f"。転送ヘッダーは当サイト自身の中継サーバー（{nets}）からのものに限り信頼します")
    return text + lang.t(". Addresses claimed in forwarding headers are ignored",
                         "。転送ヘッダーで申告された IP アドレスは用いません")


def _url_text(p: Policy, lang: _L) -> str:
    s = p.scrubber
    url_rules = [r for r in s.rules.rules if r.scopes & {"query", "path", "referrer"}]
    parts = []
    if url_rules:
        parts.append(lang.t("parameters named in the rules ", "ルールで指定したパラメータ：") + _ruled(lang, url_rules)
                     + lang.t(" (names under *Rules in force*)", "（対象の名前は「適用中のルール」に記載）"))
    if s.detectors.enabled:
        parts.append(lang.t("found anywhere in it, ", "アドレスのどこに含まれていても、") + _detected(p, lang))
    if s.sensitive_paths:
        parts.append(lang.t("sensitive pages are recorded as a template: ", "配慮を要するページはひな形で記録：")
                     + lang.join([f"`{sp.pattern}` → `{sp.replace}`" if lang.ja else
                                  f"`{sp.pattern}` as `{sp.replace}`" for sp in s.sensitive_paths]))
    return lang.t("; ", "。").join(parts) if parts else lang.t("kept as requested", "要求されたとおりに保存")


def _geo_text(p: Policy, lang: _L) -> str:
    g = p.geo
    if not g.database:
        return lang.t("not recorded (no geographic database is configured)", "記録しません（地域データベースを設定していません）")
    levels = {"country": ("country", "国"), "subdivision": ("country and region (prefecture, state)",
                                                           "国と地域（都道府県・州）"),
              "city": ("country, region and city", "国・地域・市区町村")}[g.granularity]
    minutes = g.window_seconds // 60
    return lang.t(f"{levels[0]}, looked up from the full address before it is truncated; a place seen fewer than "
                  f"{g.small_cell_k} times in {minutes} minutes is recorded one level coarser, so a rare place "
                  "cannot single out a visitor",
                  f"{levels[1]}。IP アドレスを切り捨てる前に判定します。{minutes}分間に {g.small_cell_k} 回未満しか現れない地域は"
                  "一段階粗い単位で記録し、まれな地域から閲覧者が特定されないようにします")


def _transport(p: Policy, lang: _L) -> Section:
    h = p.https
    if h.hsts_max_age:
        hsts = lang.t(f"max-age {h.hsts_max_age // 86400} days", f"有効期間 {h.hsts_max_age // 86400} 日")
        if h.hsts_include_subdomains:
            hsts += lang.t(", including subdomains", "、サブドメインを含む")
        if h.hsts_preload:
            hsts += lang.t(", preload", "、preload 指定あり")
    else:
        hsts = lang.t("not sent", "送信しません")
    rows = [
        (lang.t("Plain HTTP", "HTTP での接続"),
         lang.t(f"redirected to HTTPS (status {h.redirect_status})", f"HTTPS に転送します（ステータス {h.redirect_status}）")
         if h.redirect else lang.t("not redirected", "転送しません")),
        ("HSTS", hsts),
        ("Cookies" if not lang.ja else "Cookie",
         lang.t("marked `Secure`", "`Secure` 属性を付けます") if h.secure_cookies
         else lang.t("left as the site sets them", "当サイトが設定したとおりとします")),
        (lang.t("Oldest TLS version accepted", "受け付ける最も古い TLS のバージョン"), h.min_tls.replace("TLS1_", "TLS 1.")),
    ]
    return Section(lang.t("Encrypted transport", "通信の暗号化"), ("C1",),
                   table=Table(_heads(lang, "item|how", "項目|取扱い"), tuple(rows)))


def _personal_data(p: Policy, lang: _L) -> str:
    """What the records are in law: pseudonymized, never called anonymous (GDPR Art. 4(5), recital 26; APPI)."""
    hashed = any(r.action == "hash" for r in p.scrubber.rules.rules) or "hash" in p.beacons.roles.values()
    return lang.t(
        "These records are pseudonymized, not anonymous: " + ("they keep pseudonyms that are the same for one "
                                                              "visitor within a key period, and " if hashed else "")
        + "combined with other information they may relate to an identifiable person. They are therefore personal "
          "data under the GDPR (pseudonymised data, Art. 4(5) and recital 26), and we handle them as personal "
          "information under Japan's Act on the Protection of Personal Information (as pseudonymously processed "
          "information), with the protections described here.",
        "これらの記録は仮名化したものであり、匿名化したものではありません。"
        + ("同じ鍵の期間内では同じ閲覧者に同じ仮名が付くため、" if hashed else "")
        + "他の情報と照合することにより特定の個人を識別できる可能性があります。そのため当社は、これらの記録を個人情報の保護に関する"
          "法律上の個人情報（仮名加工情報に相当するもの）として取り扱います。また、EU 一般データ保護規則（GDPR）においても、"
          "仮名化されたデータは個人データに当たります（第4条第5号、前文第26項）。")


def _access_log(p: Policy, lang: _L) -> Section:
    s = p.scrubber
    cookie_rules = [r for r in s.rules.rules if "cookie" in r.scopes]
    rows = [
        (lang.t("Time of the request", "アクセス日時"), _time_precision(p, lang), "C3"),
        (lang.t("Client IP address", "IP アドレス"), _ip_text(p, lang), "C2, C8"),
        (lang.t("Client port", "接続元ポート番号"), lang.t("not kept", "保存しません"), "C9"),
        (lang.t("Page address (path and query)", "閲覧したページのアドレス（パス・クエリ）"), _url_text(p, lang), "C2, C8, C10"),
        (lang.t("Referrer", "参照元（リファラー）"), lang.t("processed like the page address", "ページのアドレスと同様に加工します"),
         "C2, C10"),
        (lang.t("User agent", "ユーザーエージェント"),
         lang.t("only browser family and major version and operating system family, e.g. `Chrome 120 (Windows)`",
                "ブラウザの種類とメジャーバージョン、OS の種類のみ（例：`Chrome 120 (Windows)`）"), "C9"),
        (lang.t("Cookies", "Cookie"), lang.t("not recorded", "記録しません"), "C4"),
        (lang.t("Country and region", "国・地域"), _geo_text(p, lang), "C3, C14"),
        (lang.t("Method, status, size, duration, protocol, TLS version, request id, site, host, proxy instance",
                "メソッド、ステータス、サイズ、処理時間、プロトコル、TLS のバージョン、リクエスト ID、サイト、ホスト、処理したサーバー"),
         lang.t("kept for running and troubleshooting the website", "ウェブサイトの運用と障害対応のために保存します"), "C3"),
    ]
    rot = p.logging.rotation
    mb = rot.max_bytes // (1024 * 1024) if rot.max_bytes else 0
    if lang.ja:
        start = "ログファイルは" + ("毎日" if rot.daily else "サイズに応じて") + (f"（{mb} MB に達したときにも）" if mb else "")
        after = [start + f"新しいファイルに切り替え、古いファイルは{lang.days(rot.retention_days)}。"
                 f"仮名化について：{_keys_text(p, lang)}"]
    else:
        size = f" and whenever a file reaches {mb} MB" if mb else ""
        after = [f"Log files are started anew {'every day' if rot.daily else 'only by size'}{size}; old files are "
                 f"{lang.days(rot.retention_days)}. Pseudonymization: {_keys_text(p, lang)}."]
    if cookie_rules:
        after.append(lang.t("The website's own servers receive the visitor's cookies with those named in the rules "
                            + _ruled(lang, cookie_rules) + " already processed.",
                            "当サイト自身のサーバーには、ルール " + _ruled(lang, cookie_rules) + " で指定した Cookie を加工した"
                            "うえで渡します。"))
    intro = (lang.t("Every request to the website leaves one access-log record, used for statistics and for running "
                    "the servers. Each record keeps:",
                    "本ウェブサイトへのリクエストごとに、アクセスログの記録を1件作成し、統計とサーバーの運用に利用します。各記録には"
                    "次の項目を保存します。"),)
    return Section(lang.t("Access logs", "アクセスログ"), ("C2", "C3", "C8", "C9", "C10", "C11"), intro,
                   Table(_heads(lang, "item|how it is processed|controls", "項目|加工の方法|管理策"), tuple(rows)),
                   (_personal_data(p, lang), *after))


def _paths(p: Policy) -> str:
    extra = [*p.beacons.paths, *(pp for site in (*p.sites.sites, p.sites.default) for pp in site.beacon_paths)]
    return ", ".join(f"`{path}` ({vendor})" for path, vendor in extra)


def _detected(p: Policy, lang: _L) -> str:
    """'e-mail addresses and phone numbers are replaced by a fixed marker; IP addresses are truncated (...)'"""
    d = p.scrubber.detectors
    by_action: dict[str, list[str]] = {}
    for name in d.enabled:
        by_action.setdefault(d.action(name), []).append(lang.pick(DETECTOR_TITLES.get(name, (name, name))))
    if lang.ja:
        return "、".join(f"{'・'.join(names)}は{lang.action(action)}" for action, names in by_action.items())
    return "; ".join(f"{', '.join(names)} are {lang.action(action)}" for action, names in by_action.items())


def _beacons(p: Policy, lang: _L) -> Section:
    title = lang.t("Analytics", "アクセス解析")
    enabled = [vendors.VENDORS[v] for v in vendors.VENDORS if v in p.beacons.enabled]
    if not enabled:
        return Section(title, ("C4", "C6"), (lang.t(
            "No analytics beacon is filtered by this proxy: none is enabled in `beacons.vendors`.",
            "本システムでは、アクセス解析の計測データを処理していません（`beacons.vendors` で有効にしたサービスはありません）。"),))
    roles = p.beacons.roles
    rows = [(lang.pick(ROLE_TITLES[r]), lang.action(roles[r])) for r in ROLE_TITLES]
    rows.append((lang.t("Page address and referrer", "ページのアドレスと参照元"),
                 lang.t("the page-address processing of the access log", "アクセスログのページのアドレスと同様に加工")))
    unknown = {"detect": lang.t("scanned: ", "検査して、") + (_detected(p, lang) or lang.t("no detector is enabled",
                                                                                      "検出器は無効")),
               "drop": lang.action("drop"), "keep": lang.action("keep")}[p.scrubber.unknown]
    rows.append((lang.t("Fields no rule knows", "ルールで定めていない項目"), unknown))
    rows.append((lang.t("Cookies sent along", "あわせて送信される Cookie"),
                 lang.t("only the vendor's own cookies are forwarded, processed by the cookie rules",
                        "そのサービス自身の Cookie のみを、Cookie のルールで加工したうえで送信")))
    set_rules = [r for r in p.scrubber.rules.rules if "set_cookie" in r.scopes]
    if set_rules:
        rows.append((lang.t("Tracking cookies set in the browser", "ブラウザへの追跡用 Cookie の設定"),
                     lang.t("not set: cookies named in the rules ", "設定しません（対象：") + _names(
                         tuple(r.id for r in set_rules)) + lang.t("", "）")))
    rows.append((lang.t("Consent signals in the beacon (Google Consent Mode, IAB TCF)",
                        "計測データに含まれる同意の信号（Google 同意モード、IAB TCF）"),
                 lang.t("kept as sent and obeyed; a refusal is never weakened", "送信されたとおりに保持して従い、拒否を弱めることはしません")))
    kb = p.beacons.limits.max_body // 1024
    rows.append((lang.t("Beacons that cannot be decoded", "解読できない計測データ"),
                 lang.t("never forwarded with their identifiers: identifying fields are removed, or the beacon is not "
                        f"forwarded at all; bodies over {kb} KB are refused",
                        f"識別子を含んだまま送信することはなく、識別に関わる項目を削除するか、送信しません。{kb} KB を超えるものは"
                        "受け付けません")))
    names = lang.join([c.title for c in enabled])
    intro = (lang.t(f"This website measures its use with {names}. The visitor's browser sends these measurements to "
                    "the website's own addresses; they are filtered here before the analytics provider receives "
                    "them. Unless the visitor is a member who consented (next section):",
                    f"本ウェブサイトでは、利用状況の計測に {names} を利用しています。計測データはお客様のブラウザから当サイト自身の"
                    "アドレスに送信され、解析サービスの提供者に届く前に本システムで次のとおり加工します（次の節に記載する、同意した"
                    "会員の場合を除きます）。"),)
    after: tuple[str, ...] = ()
    if _paths(p):
        after = (lang.t("Collection addresses configured for this site in addition to each provider's defaults: ",
                        "各サービスの標準の送信先に加えて、当サイトで設定している送信先：") + _paths(p) + lang.t(".", "。"),)
    return Section(title, ("C4", "C6", "C8", "C9", "C10"), intro,
                   Table(_heads(lang, "data|how it is processed", "データ|加工の方法"), tuple(rows)), after)


def _members(p: Policy, lang: _L) -> Section:
    c = p.consent
    title = lang.t("Members who consented", "同意した会員の取扱い")
    if not c.enabled:
        return Section(title, ("C5", "C12", "C13"), (lang.t(
            "No visitor is linked to their identity: member-linkage consent is switched off, so every request is "
            "processed as described above.",
            "会員連携の同意の機能を使用していないため、閲覧者を特定の個人と結び付けることはなく、すべてのリクエストを上記のとおり"
            "処理します。"),))
    refusals = [lang.t(f"a withdrawal (`{c.withdrawal_cookie}` cookie)", f"同意の撤回（`{c.withdrawal_cookie}` Cookie）")
                if c.withdrawal_cookie else "",
                lang.t("a revocation by the member", "会員による同意の取消し") if c.revocations is not None else "",
                "Global Privacy Control（`Sec-GPC: 1`）" if lang.ja and c.honor_gpc else
                "Global Privacy Control (`Sec-GPC: 1`)" if c.honor_gpc else "",
                "Do Not Track（`DNT: 1`）" if lang.ja and c.honor_dnt else "Do Not Track (`DNT: 1`)" if c.honor_dnt else "",
                lang.t("an IAB TCF consent string without consent to purposes 1, 7, 8 and 9",
                       "目的 1・7・8・9 への同意を含まない IAB TCF の同意文字列") if c.tcf_cookie else "",
                lang.t("a refusal inside the analytics beacon itself", "計測データ自体に含まれる拒否の信号")]
    text = (
        lang.t("A visitor is linked to their identity only when they registered as a member and consented. The member "
               f"system then gives the browser a signed consent token (HMAC-SHA256, valid for at most "
               f"{c.max_ttl_days} days), and the proxy checks its signature and expiry on every request. Forged, "
               "expired or unknown tokens count as no consent.",
               "閲覧者を特定の個人と結び付けるのは、会員として登録し、同意した場合に限ります。この場合、会員システムがブラウザに署名付き"
               f"の同意トークン（HMAC-SHA256、有効期間は最長 {c.max_ttl_days} 日）を発行し、本システムはリクエストごとにその署名と"
               "有効期限を確認します。偽造されたもの、期限切れのもの、確認できないものは、同意がないものとして扱います。"),
        lang.t("With a valid token, the member's analytics measurements reach the provider as the browser sent them, "
               "and (when the member consented to it) each request is also written, with the member id, to a "
               "separate linked log that keeps the access-log items above plus the member id and the id of the "
               "signing key.",
               "有効なトークンがある場合、会員の計測データはブラウザが送信したとおりに解析サービスに届きます。また、会員が同意した"
               "場合は、リクエストごとに上記のアクセスログの項目に会員 ID と署名鍵の ID を加えた記録を、別の連携ログに保存します。"),
        lang.t("A valid token is overridden by ", "有効なトークンがあっても、次のいずれかがあれば同意がないものとして扱います：")
        + lang.join([r for r in refusals if r]) + lang.t(".", "。"),
    )
    after = (lang.t(f"Linked records are {lang.days(c.linked_retention_days)}. On request a member's linked records "
                    "are exported in a portable format (JSON lines) or erased (`privproxy dsr export|erase`), and "
                    "each request is recorded without the member id in clear.",
                    f"連携ログの記録は{lang.days(c.linked_retention_days)}。ご請求があった場合は、会員の連携ログの記録を"
                    "機械で読み取れる形式（JSON Lines）で開示し、または削除します（`privproxy dsr export|erase`）。ご請求の"
                    "記録には会員 ID をそのままの形では残しません。"),)
    return Section(title, ("C5", "C12", "C13"), text, None, after)


def _regions(p: Policy, lang: _L) -> Section:
    title = lang.t("Visitors from different regions", "地域による取扱いの違い")
    rules = [r for r in p.scrubber.rules.rules if r.regions]
    if not rules:
        return Section(title, ("C14",), (lang.t("The same rules apply to every visitor, wherever they are.",
                                                "お客様の所在地にかかわらず、同じルールを適用します。"),))
    rows = tuple((f"`{r.id}`", ", ".join(sorted(r.regions)), lang.action(r.action)) for r in rules)
    return Section(title, ("C14",), (lang.t(
        "Some rules apply only to visitors from certain countries (looked up from the full address before it is "
        "truncated):", "次のルールは、特定の国からの閲覧者にのみ適用します（国は IP アドレスを切り捨てる前に判定します）。"),),
        Table(_heads(lang, "rule|countries|processing", "ルール|国|加工"), rows))


def _rules(p: Policy, lang: _L) -> Section:
    only = lang.t(" (counted only, not applied)", "（集計のみ、適用なし）")
    rows = tuple((f"`{r.id}`" + (only if r.report_only else ""), ", ".join(sorted(r.scopes)), _names(r.names),
                  lang.action(r.action), ", ".join(r.controls), r.why) for r in p.scrubber.rules.rules)
    return Section(lang.t("Rules in force", "適用中のルール"), (), (lang.t(
        "Every rule of the configuration, as applied to parameters, cookies, headers and analytics fields:",
        "パラメータ、Cookie、ヘッダー、計測データの項目に適用している設定上のすべてのルールです。"),),
        Table(_heads(lang, "rule|applies to|names|processing|controls|why", "ルール|対象|名前|加工|管理策|根拠"), rows))


def _builtin(p: Policy, lang: _L) -> dict[str, str]:
    """What enforces each control whatever the rules say, with the settings in force."""
    t, c, g = p.truncation, p.consent, p.geo
    tls = p.https.min_tls.replace("TLS1_", "1.")
    sensitive = ", ".join(f"`{s.pattern}`" for s in p.scrubber.sensitive_paths)
    key_mode = (lang.t(" (one-way ratchet: past keys erased)", "。一方向の更新により過去の鍵は消去") if p.pseudonyms.key_file
                else lang.t(" (from a fixed secret: past keys can be recomputed)", "。固定の秘密情報から導出するため過去の鍵は再計算可能"))
    kept = p.logging.rotation.retention_days
    ja_kept = "期限なし" if kept is None else f"{kept}日"
    return {
        "C1": lang.t(f"HTTPS redirect, HSTS, Secure cookies, TLS >= {tls}",
                     f"HTTPS への転送、HSTS、Cookie の Secure 属性、TLS {tls} 以上"),
        "C2": lang.t(f"client address truncation (/{t.ipv4_prefix}, /{t.ipv6_prefix}); access-log record",
                     f"IP アドレスの切り捨て（/{t.ipv4_prefix}、/{t.ipv6_prefix}）、アクセスログの記録"),
        "C3": lang.t("access-log record with status, timings, request id", "ステータス・処理時間・リクエスト ID を含むアクセスログ")
        + (lang.t(", coarse geography", "、おおまかな地域") if g.database else ""),
        "C4": lang.t("cookies never logged; only a vendor's own cookies forwarded to it",
                     "Cookie は記録せず、解析サービスにはそのサービス自身の Cookie のみを送信"),
        "C5": (lang.t("signed consent tokens; separate linked log", "署名付きの同意トークン、別の連携ログ") if c.enabled
               else lang.t("consent switched off: nobody linked", "同意の機能は不使用：連携なし")),
        "C6": (lang.t("beacon codecs for ", "計測データの処理：") + ", ".join(sorted(p.beacons.enabled))
               if p.beacons.enabled else lang.t("no vendor", "対象サービスなし")),
        "C7": lang.t("this report, generated from the rules in force", "適用中のルールから作成した本書"),
        "C8": lang.t("detectors (", "検出器（") + ", ".join(p.scrubber.detectors.enabled)
        + lang.t(") on unknown fields and URLs", "）によるルール外の項目と URL の検査"),
        "C9": lang.t("client port dropped; user agent generalized", "接続元ポート番号の削除、ユーザーエージェントの一般化"),
        "C10": lang.t("sensitive paths: ", "配慮を要するページ：") + (sensitive or lang.t("none", "なし")),
        "C11": (f"ログの保存期間（{ja_kept}）、鍵の更新（{PERIOD['ja'][p.pseudonyms.rotation]}{key_mode}）" if lang.ja
                else f"log retention ({lang.days(kept)}); key rotation {PERIOD['en'][p.pseudonyms.rotation]}{key_mode}"),
        "C12": (lang.t("`privproxy dsr export` and `erase` over the linked log", "連携ログに対する `privproxy dsr export`・`erase`")
                if c.enabled else lang.t("no linked records exist", "連携ログの記録なし")),
        "C13": (lang.t("GPC, DNT, TCF, withdrawal and revocation override consent",
                       "GPC・DNT・TCF・撤回・取消しが同意に優先") if c.enabled else lang.t("nobody is linked", "連携なし")),
        "C14": (lang.t("region rules", "地域別のルール") if any(r.regions for r in p.scrubber.rules.rules)
                else lang.t("available (no region rule set)", "利用可能（地域別のルールは未設定）")),
        "C15": lang.t("forwarding headers only from trusted proxies; forged tokens refused; metrics on loopback by "
                      "default", "転送ヘッダーは信頼する中継サーバーからのみ受け付け、偽造トークンを拒否、監視用の指標は既定で"
                                 "ループバックのみで提供"),
    }


PROTECTIONS_JA = {
    "click-ids": "広告クリック ID（gclid、fbclid など）を URL と Cookie から削除",
    "contact-params": "メールアドレス・電話番号・氏名・住所のパラメータを固定の文字列に置換",
    "personal-names": "姓・名・氏名のパラメータ（fname、last_name など）を固定の文字列に置換",
    "visitor-ids": "アカウント ID・閲覧者 ID のパラメータを仮名化",
    "secrets": "トークン・パスワード・セッション ID を URL から削除",
    "tracking-cookies": "解析用・広告用 Cookie を仮名化し、ブラウザに設定させない",
    "device-detail": "ユーザーエージェントと画面サイズを一般化",
    "https-redirect": "HTTP での接続を HTTPS に転送（`https.redirect`）",
    "hsts": "HSTS を2年間、サブドメインを含めて送信（`https.hsts`）",
    "secure-cookies": "HTTPS で設定されるすべての Cookie に `Secure` 属性を付与（`https.secure_cookies`）",
    "ip-truncation": "IP アドレスを /24（IPv4）・/48（IPv6）以下に切り捨て（`ip_truncation`）",
    "unknown-fields": "ルールで定めていない項目を検出器で検査（`unknown_fields`）",
    "report-only": "ルールを適用（`report_only: true` では、すべてを加工せずに送信・記録します）",
    "phone-regions": "標準の国（`detectors.phone_regions`）の国内形式の電話番号を検出",
    "signal:gpc": "`Sec-GPC: 1` を同意トークンに優先（`consent.honor_gpc`）",
    "signal:dnt": "`DNT: 1` を同意トークンに優先（`consent.honor_dnt`）",
    "signal:tcf": "IAB TCF の同意文字列に目的 1・7・8・9 への同意を求める（`consent.tcf_cookie`）",
    "signal:withdrawal": "同意撤回の Cookie を同意トークンに優先（`consent.withdrawal_cookie`）",
}


def _protection_ja(pid: str) -> str:
    """What a shipped protection does, in Japanese; the English text for one added since (none is left out)."""
    kind, _, name = pid.partition(":")
    english = protections.IDS[pid]
    if pid in PROTECTIONS_JA:
        return f"ルール `{pid}`：" + PROTECTIONS_JA[pid] if english.startswith("rule ") else PROTECTIONS_JA[pid]
    if english.startswith("sensitive path "):
        return f"配慮を要するページ {english.split(' ')[2]} を一般化"
    if kind == "detector" and name:
        return f"検出器 `{name}`（{DETECTOR_TITLES.get(name, (name, name))[1]}）を標準と同じ厳しさで使用（`detectors`）"
    if kind == "vendor" and name in vendors.VENDORS:
        return (f"{vendors.VENDORS[name].title} の計測データを解読して加工（`beacons.vendors`。無効の場合、通常のページとして"
                "加工されずに送信されます）")
    if kind == "role" and name in ROLE_TITLES:
        return f"「{ROLE_TITLES[name][1]}」を標準以上の厳しさで加工（`beacons.roles`）"
    return english


def _disabled(p: Policy, lang: _L) -> Section:
    """The shipped protections this configuration switches off (`disable:`), each with what it protected."""
    title = lang.t("Protections switched off", "無効にしている保護機能")
    if not p.disabled:
        return Section(title, (), (lang.t("None: every protection privproxy ships is in force.",
                                          "ありません。privproxy が標準で備える保護機能はすべて有効です。"),))
    rows = tuple((f"`{pid}`", _protection_ja(pid) if lang.ja else protections.IDS[pid]) for pid in p.disabled)
    return Section(title, (), (lang.t("The operator switched off these protections that privproxy applies by default; "
                                      "the rest of this notice describes what happens instead:",
                                      "当社は、privproxy が標準で適用する次の保護機能を無効にしています。以下の各節には、その代わりに行う"
                                      "取扱いを記載しています。"),),
                   Table(_heads(lang, "protection|what it does when on", "保護機能|有効な場合の働き"), rows))


def _controls(p: Policy, lang: _L) -> Section:
    builtin = _builtin(p, lang)
    mapped = p.disclosure.controls
    rows = []
    for cid, titles in CONTROL_TITLES.items():
        rules = [f"`{r.id}`" for r in p.scrubber.rules.rules if cid in r.controls]
        rules += [f"`{s.id}`" for s in p.scrubber.sensitive_paths if cid in s.controls]
        got = mapped.get(cid)
        promise = got.text(lang.lang) if got is not None else lang.pick(titles)
        clauses = "; ".join(got.clauses) if got is not None and got.clauses else "-"
        enforced = builtin[cid] + ((lang.t("; rules ", "、ルール ") + lang.join(rules)) if rules else "")
        rows.append((cid, promise, clauses, enforced))
    text: tuple[str, ...] = ()
    if mapped.documents:
        text = (lang.t("Clauses are cited from these documents: ", "条項は次の文書から引用しています：")
                + lang.join([f"{d}：{title}" if lang.ja else f"{d}: {title}"
                             for d, title in mapped.documents_in(lang.lang)])
                + lang.t(".", "。"),)
    elif not mapped.controls:
        text = (lang.t("No controls file names the clauses of the privacy policy that each control keeps "
                       "(`disclosure.controls_file`); the table lists what each control does.",
                       "各管理策が対応するプライバシーポリシーの条項は設定されていません（`disclosure.controls_file`）。下表には各管理策の"
                       "内容のみを記載しています。"),)
    return Section(lang.t("Controls and the rules that enforce them", "管理策と、それを実施する設定・ルール"), (), text,
                   Table(_heads(lang, "id|promise|policy clauses|enforced by", "ID|約束している内容|ポリシーの条項|実施方法"),
                         tuple(rows)))


def _publisher(p: Policy, lang: _L) -> Section | None:
    """Who publishes the notice, how to reach them, from when it applies (filters.yaml `disclosure:`)."""
    d = p.disclosure
    if not d.configured:
        return None
    labels = [("controller", ("Controller", "事業者の名称")), ("representative", ("Representative", "代表者")),
              ("address", ("Address", "所在地")), ("contact", ("Contact for questions and requests",
                                                             "お問い合わせ・ご請求の窓口")),
              ("privacy_officer", ("Person in charge of personal information", "個人情報保護管理者")),
              ("policy_url", ("Privacy policy", "プライバシーポリシー"))]
    rows = [(lang.pick(label), d.text(key, lang.lang)) for key, label in labels if d.text(key, lang.lang)]
    if d.effective_date:
        day = datetime.date.fromisoformat(d.effective_date)
        rows.append((lang.t("Effective from", "適用開始日"),
                     lang.t(f"{day:%d %B %Y}".lstrip("0"), f"{day.year}年{day.month}月{day.day}日")))
    purposes = d.text("purposes", lang.lang)
    text: tuple[str, ...] = ()
    if purposes:
        text = (lang.t("The access information is used for: ", "アクセス情報は、次の目的のために利用します：")
                + lang.join(list(purposes)) + lang.t(".", "。"),)
    return Section(lang.t("Who is responsible", "取扱いの責任者"), ("C7",), text,
                   Table(_heads(lang, "item|details", "項目|内容"), tuple(rows)))


def build(p: Policy, version: str, generated: datetime.datetime | None = None, lang: str = "en") -> Report:
    lg = _L(lang)
    generated = generated or datetime.datetime.now(datetime.UTC)
    d = p.disclosure
    who = d.text("controller", lang) if d.configured else ""
    if lg.ja:
        when = f"{generated.year}年{generated.month}月{generated.day}日 {generated:%H:%M}"
        intro = [f"{who or '本ウェブサイトの運営者'}（以下「当社」といいます）は、本ウェブサイトのご利用に際してお客様のブラウザから"
                 "送信される情報（以下「アクセス情報」といいます）を、以下のとおり取り扱います。",
                 f"本書は、当社が運用するプライバシー保護プロキシ（privproxy {version}）に適用している設定（設定ファイルの SHA-256："
                 f"`{p.sha256[:16]}`）から {when}（協定世界時）に作成したものであり、設定を変更した場合にはその内容も変わります。"]
        if d.effective_date:
            day = datetime.date.fromisoformat(d.effective_date)
            intro.append(f"本書は {day.year}年{day.month}月{day.day}日から適用します。")
    else:
        intro = [f"This notice describes how {who or 'the operator of this website'} (\"we\") processes the "
                 f"information its visitors' browsers send. It is generated by privproxy {version} from the rules in force "
                 f"(configuration sha256 `{p.sha256[:16]}`, generated {generated:%Y-%m-%d %H:%M} UTC); it changes "
                 "whenever they change."]
        if d.effective_date:
            intro.append(f"It applies from {d.effective_date}.")
    warnings = []
    if not d.configured:
        warnings.append(lg.t("This configuration has no `disclosure:` section: the notice names no controller and no "
                             "contact. Add them to filters.yaml before publishing it.",
                             "設定に `disclosure:` の節がないため、本書には事業者の名称とお問い合わせ窓口が記載されていません。"
                             "公表する前に filters.yaml に追加してください。"))
    if p.scrubber.report_only:
        warnings.append(lg.t("The rules are in report-only mode: what they would change is counted, but requests, logs "
                             "and analytics are NOT filtered. This notice describes the rules, not what happens now.",
                             "ルールは集計のみのモードで動作しており、リクエスト・ログ・計測データは現在加工されていません。本書はルールの"
                             "内容を記載したものであり、現在の取扱いを表すものではありません。"))
    if any(r.report_only for r in p.scrubber.rules.rules) and not p.scrubber.report_only:
        warnings.append(lg.t("Some rules are counted only and not applied (marked in the rules table).",
                             "一部のルールは集計のみで、適用していません（ルールの表に記載）。"))
    if p.disabled:
        warnings.append(lg.t(f"{len(p.disabled)} of the protections privproxy ships are switched off by this "
                             "configuration (listed in the first section).",
                             f"privproxy が標準で備える保護機能のうち {len(p.disabled)} 件を、この設定で無効にしています"
                             "（最初の節に記載）。"))
    publisher = _publisher(p, lg)
    sections = ((publisher,) if publisher else ()) + (
        _disabled(p, lg), _transport(p, lg), _access_log(p, lg), _beacons(p, lg), _members(p, lg), _regions(p, lg),
        _glossary(p, lg), _rules(p, lg), _controls(p, lg))
    title = lg.t("How this website processes access information", "本ウェブサイトにおけるアクセス情報の取扱いについて")
    return Report(title, tuple(intro), tuple(warnings), sections, lang)


# -- rendering ---------------------------------------------------------------------------------------------

WARNING = {"en": "Warning:", "ja": "注意："}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _heading(s: Section, lang: str) -> str:
    if not s.controls:
        return s.title
    return s.title + (f"（{'、'.join(s.controls)}）" if lang == "ja" else f" ({', '.join(s.controls)})")


def markdown(r: Report) -> str:
    out = [f"# {r.title}", ""]
    out += [*(t + "\n" for t in r.intro)]
    out += [f"> **{WARNING[r.lang]}** {w}\n" for w in r.warnings]
    for s in r.sections:
        out += [f"## {_heading(s, r.lang)}", ""]
        out += [t + "\n" for t in s.text]
        if s.table:
            out.append("| " + " | ".join(s.table.headers) + " |")
            out.append("|" + "---|" * len(s.table.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.table.rows]
            out.append("")
        out += [t + "\n" for t in s.after]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = text.split("`")
    return "".join(f"<code>{htmllib.escape(part)}</code>" if i % 2 else htmllib.escape(part)
                   for i, part in enumerate(parts))


STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.45}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .6em;"
         "vertical-align:top;text-align:left}th{background:#f3f3f3}.warning{border-left:4px solid #c00;"
         "padding:.5em 1em;background:#fff3f3}code{font-size:.92em}")


def html(r: Report) -> str:
    out = ["<!doctype html>", f'<html lang="{r.lang}"><head><meta charset="utf-8">',
           f"<title>{htmllib.escape(r.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{htmllib.escape(r.title)}</h1>"]
    out += [f"<p>{_inline(t)}</p>" for t in r.intro]
    out += [f'<p class="warning"><strong>{WARNING[r.lang]}</strong> {_inline(w)}</p>' for w in r.warnings]
    for s in r.sections:
        out.append(f"<h2>{htmllib.escape(_heading(s, r.lang))}</h2>")
        out += [f"<p>{_inline(t)}</p>" for t in s.text]
        if s.table:
            out.append("<table><thead><tr>" + "".join(f"<th>{htmllib.escape(h)}</th>" for h in s.table.headers)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in s.table.rows]
            out.append("</tbody></table>")
        out += [f"<p>{_inline(t)}</p>" for t in s.after]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(r: Report, fmt: str) -> str:
    return markdown(r) if fmt == "md" else html(r)
