"""logging.query_allowlist: a site that names what its logs keep gets only those parameters logged (C2, C3)."""

from __future__ import annotations

import pytest

from privproxy import pipeline, policy
from privproxy.errors import ConfigErrors
from privproxy.log_filter import LogFilter
from privproxy.outcome import Outcome
from privproxy.query_allowlist import Allowlist

CONFIG = """version: 1
logging: {query_allowlist: [q, page, "utm_*"]}
"""


def test_names_and_globs_case_insensitive():
    a = Allowlist(("q", "utm_*", "p?"), active=True)
    assert a.apply("/s?q=1&page=2&UTM_Source=x&px=3&color=red#top") == ("/s?q=1&UTM_Source=x&px=3#top",
                                                                         ("page", "color"))
    assert a.apply("/s?color=red") == ("/s", ("color",))
    assert a.apply("https://h.example/s?a%2Bb=1&q") == ("https://h.example/s?q", ("a+b",))
    assert Allowlist().apply("/s?color=red") == ("/s?color=red", ())  # no list: the rules decide
    assert Allowlist((), active=True).apply("/s?q=1") == ("/s", ("q",))  # an empty list keeps none


def _record(p: policy.Policy, target: str, ref: str = "") -> tuple[str, str, list[str]]:
    index = {"host": ["shop.example"]}
    view = pipeline.RequestView(peer="198.51.100.7", tls=True, method="GET", host="shop.example", path=target,
                                get_all=lambda name: index.get(name, []), fields=(("Host", "shop.example"),))
    state = pipeline.begin(view, p)
    r = pipeline.log_record(state, view, 200, 1, Outcome.FORWARDED, state.started, referrer=ref)
    return r.path, r.referrer, [c.field for c in state.changes if c.rule == "query_allowlist"]


def test_the_log_keeps_only_the_listed_parameters_after_the_rules():
    p = policy.from_text(CONFIG, "f.yaml", secret=b"allow")
    path, ref, dropped = _record(p, "/search?q=jane%40example.com&page=2&color=red&utm_source=news&uid=m-123",
                                 "https://shop.example/list?page=3&sort=price")
    # the rules still run on what is kept (the email in q), and every other name is left out
    assert path == "/search?q=[email]&page=2&utm_source=news"
    assert ref == "https://shop.example/list?page=3"
    assert dropped == ["color", "uid", "sort"]
    # filter-log writes the same
    f = LogFilter(p, "combined")
    line = ('203.0.113.7 - - [01/Dec/2026:12:00:00 +0000] "GET /search?q=jane%40example.com&page=2&color=red'
            '&utm_source=news&uid=m-123 HTTP/1.1" 200 1 "https://shop.example/list?page=3&sort=price" "-"\n')
    out = f.line(line)
    assert '"GET /search?q=[email]&page=2&utm_source=news HTTP/1.1"' in out
    assert f.stats.rules["query_allowlist"] == 2  # color and uid (the referrer is external to filter-log: cut)


def test_a_bad_list_names_the_line():
    with pytest.raises(ConfigErrors) as e:
        policy.from_text("version: 1\nlogging:\n  query_allowlist: [q, '']\n", "f.yaml", secret=b"a")
    assert "f.yaml:3:24: logging.query_allowlist[1]" in str(e.value) and "parameter name" in str(e.value)
    with pytest.raises(ConfigErrors) as e:
        policy.from_text("version: 1\nlogging:\n  query_allowlist: q\n", "f.yaml", secret=b"a")
    assert "f.yaml:3" in str(e.value)

