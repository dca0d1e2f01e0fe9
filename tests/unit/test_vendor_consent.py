"""privproxy.vendor_consent: a visitor's Sec-GPC and TCF string refuse a vendor by what it is used for, its GVL id
read in both of TCF's vendor encodings; an unreadable string refuses."""

from __future__ import annotations

import base64

import pytest

from privproxy import vendor_consent
from privproxy.vendor_consent import refusal, tcf_vendor_consents


def tc_string(purposes: set[int], vendors: set[int], max_vendor: int = 800, ranges: bool = False) -> str:
    """A TCF v2.2 core segment: version 2, the purposes' consent bits, and the vendor consents as a bit field or
    as ranges (one entry per vendor id)."""
    bits = "000010" + "0" * 146  # version 2, then Created ... SpecialFeatureOptIns (152 bits in all)
    bits += "".join("1" if p in purposes else "0" for p in range(1, 25))
    bits += "0" * 24 + "0" + "0" * 12  # PurposesLITransparency, PurposeOneTreatment, PublisherCC
    bits += format(max_vendor, "016b")
    if ranges:
        bits += "1" + format(len(vendors), "012b") + "".join("0" + format(v, "016b") for v in sorted(vendors))
    else:
        bits += "0" + "".join("1" if v in vendors else "0" for v in range(1, max_vendor + 1))
    bits += "0" * (-len(bits) % 8)
    return base64.urlsafe_b64encode(int(bits, 2).to_bytes(len(bits) // 8, "big")).decode().rstrip("=")


ALL = set(range(1, 11))


@pytest.mark.parametrize("ranges", [False, True])
def test_vendor_consent_in_both_encodings(ranges):
    tc = tc_string(ALL, {755, 12}, ranges=ranges)
    assert tcf_vendor_consents(tc, 755) and tcf_vendor_consents(tc, 12)
    assert not tcf_vendor_consents(tc, 13) and not tcf_vendor_consents(tc, 801)


def test_a_range_entry_covers_its_span():
    tc = tc_string(ALL, set(), ranges=True)
    # hand-made: one range entry 100-200 (replace the empty entry list)
    raw = base64.urlsafe_b64decode(tc + "=" * (-len(tc) % 4))
    bits = bin(int.from_bytes(raw, "big"))[2:].zfill(len(raw) * 8)[:230]
    bits += format(1, "012b") + "1" + format(100, "016b") + format(200, "016b")
    bits += "0" * (-len(bits) % 8)
    tc = base64.urlsafe_b64encode(int(bits, 2).to_bytes(len(bits) // 8, "big")).decode().rstrip("=")
    assert tcf_vendor_consents(tc, 150) and not tcf_vendor_consents(tc, 99) and not tcf_vendor_consents(tc, 201)


@pytest.mark.parametrize("tc", ["", "not base64!", "AAAA", tc_string(ALL, {755})[:30]])
def test_an_unreadable_string_gives_no_consent(tc):
    assert not tcf_vendor_consents(tc, 755)


def test_gpc_refuses_advertising_only():
    assert refusal(("advertising",), None, ["1"], []) == "gpc"
    assert refusal(("analytics", "advertising"), None, [" 1 "], []) == "gpc"
    assert refusal(("analytics",), None, ["1"], []) is None
    assert refusal(("advertising",), None, ["0"], []) is None
    assert refusal(("advertising",), None, ["1"], [], honor_gpc=False) is None


def test_tcf_needs_the_vendor_and_its_purposes():
    ok = tc_string({1, 8, 9}, {755})
    assert refusal(("analytics",), 755, [], [ok]) is None
    assert refusal(("advertising",), 755, [], [ok]) == "tcf"  # purposes 2-4 and 7 missing
    assert refusal(("analytics",), 756, [], [ok]) == "tcf"  # another vendor
    assert refusal(("analytics",), 755, [], [ok, "garbage"]) == "tcf"  # any string refusing refuses
    assert refusal(("analytics",), None, [], ["garbage"]) is None  # no GVL id configured: TCF not read per vendor
    assert refusal(("analytics",), 755, [], []) is None  # no TCF string: no CMP, nothing to refuse


def test_gpc_json():
    assert vendor_consent.gpc_json() == b'{"gpc": true}\n'


# --- GPP ---------------------------------------------------------------------------------------------------------


def b64(bits: str) -> str:
    bits += "0" * (-len(bits) % 6)
    return "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[int(bits[i:i + 6], 2)]
                   for i in range(0, len(bits), 6))


def fib(n: int) -> str:
    """Fibonacci coding (Zeckendorf, least first, then the closing 1)."""
    seq = [1, 2]
    while seq[-1] <= n:
        seq.append(seq[-1] + seq[-2])
    bits = ["0"] * len(seq)
    for i in range(len(seq) - 1, -1, -1):
        if seq[i] <= n:
            bits[i], n = "1", n - seq[i]
    return "".join(bits).rstrip("0") + "1"


def gpp(sections: dict[int, str]) -> str:
    ids = sorted(sections)
    header = "000011" + "000001" + format(len(ids), "012b")
    last = 0
    for sid in ids:
        header += "0" + fib(sid - last)
        last = sid
    return "~".join([b64(header), *(sections[sid] for sid in ids)])


def us_section(opt_outs: dict[int, int], length: int = 66) -> str:
    bits = list("000001" + "10" * ((length - 6) // 2))  # version 1, every field "did not opt out"
    for at, value in opt_outs.items():
        bits[at:at + 2] = format(value, "02b")
    return b64("".join(bits))


def test_the_gpp_header_as_the_iab_examples_spell_it():
    assert set(vendor_consent.gpp_sections("DBABLA~BVQqAAAAAgA.QA")) == {7}  # usnat, with its GPC subsection
    assert set(vendor_consent.gpp_sections("DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")) == {2}  # TCF EU
    assert set(vendor_consent.gpp_sections(gpp({7: us_section({}), 8: us_section({})}))) == {7, 8}


@pytest.mark.parametrize(("sid", "at"), [(7, 18), (7, 20), (7, 22), (8, 12), (8, 14), (9, 14), (11, 16)])
def test_a_us_opt_out_refuses_advertising(sid, at):
    opted = gpp({sid: us_section({at: 1})})
    assert vendor_consent.gpp_opts_out(opted)
    assert refusal(("advertising",), None, [], [], gpp=(opted, "")) == "gpp"
    assert refusal(("analytics",), None, [], [], gpp=(opted, "")) is None
    assert not vendor_consent.gpp_opts_out(gpp({sid: us_section({})}))  # "did not opt out" everywhere


def test_gpp_sid_limits_the_sections_that_apply_and_garbage_refuses():
    both = gpp({7: us_section({}), 8: us_section({12: 1})})
    assert vendor_consent.gpp_opts_out(both, "7,8") and vendor_consent.gpp_opts_out(both)
    assert not vendor_consent.gpp_opts_out(both, "7")
    assert not vendor_consent.gpp_opts_out(gpp({2: "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}))  # EU only
    for bad in ("", "not gpp", "DBABLA", "DBABLA~", "DBACNYA~x~y~z"):
        assert vendor_consent.gpp_opts_out(bad), bad


@pytest.mark.parametrize(("gcs", "gcd", "denied"), [
    ("G111", "", set()), ("G100", "", {"analytics", "advertising"}), ("G110", "", {"analytics"}),
    ("G101", "", {"advertising"}), ("", "13t3t3t3t5l1", set()), ("", "13v3q3v3v5l1", {"analytics"}),
    ("", "13p3v3v3v5l1", {"advertising"}), ("", "13v3v3v3m5l1", {"advertising"}), ("", "13r3r2r2r5l1", set()),
    ("junk", "", set()), ("", "13l3l3l3l5l1", set()),  # not set: the site's own rules decide, as before
])
def test_consent_mode_denies_per_use(gcs, gcd, denied):
    assert vendor_consent.consent_mode_denies(gcs, gcd) == frozenset(denied)


def test_consent_mode_refuses_the_vendor_whose_use_it_denies_and_only_it():
    analytics, ads = ("analytics",), ("advertising",)
    mode = vendor_consent.consent_mode_denies("G101", "")  # ad_storage denied, analytics_storage granted
    assert vendor_consent.refusal(analytics, None, [], [], consent_mode=mode) is None
    assert vendor_consent.refusal(ads, None, [], [], consent_mode=mode) == "consent_mode"
    assert vendor_consent.refusal(analytics, None, [], [], consent_mode=frozenset({"analytics"})) == "consent_mode"


def test_the_gateway_reads_consent_mode_from_the_hit():
    from privproxy import beacons, gateway
    from privproxy.consent import decision

    fwd = beacons.Forward("ga4", beacons.endpoint("https://region1.google-analytics.com"))
    settings = decision.Settings()
    none = lambda name: []  # noqa: E731 - header lookup of a request without any
    assert gateway.refused(fwd, none, settings, "v=2&tid=G-1&gcs=G100&en=page_view") == "consent_mode"
    assert gateway.refused(fwd, none, settings, "v=2&tid=G-1&gcd=13v3q3v3v5l1") == "consent_mode"
    assert gateway.refused(fwd, none, settings, "v=2&tid=G-1&gcs=G111&gcd=13v3v3v3v5l1") is None
    assert gateway.refused(fwd, none, settings, "v=2&tid=G-1&gcs=G111&gcs=G100") == "consent_mode"  # twice: stricter


def test_a_gpp_range_of_billions_is_refused_before_it_is_made():
    # header: type 3, version 1, one range entry from 1 spanning ~10^9 ids (Fibonacci-coded: a few characters)
    def fib(n: int) -> str:
        w = [1, 2]
        while w[-1] <= n:
            w.append(w[-1] + w[-2])
        bits, r = [0] * len(w), n
        for i in range(len(w) - 1, -1, -1):
            if w[i] <= r:
                bits[i], r = 1, r - w[i]
        while bits and bits[-1] == 0:
            bits.pop()
        return "".join(map(str, bits)) + "1"

    bits = format(3, "06b") + format(1, "06b") + format(1, "012b") + "1" + fib(1) + fib(10**9)
    bits += "0" * (-len(bits) % 6)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    header = "".join(alphabet[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))
    with pytest.raises(ValueError, match="too many sections"):
        vendor_consent.gpp_sections(header + "~BAAAAAAA")
    assert vendor_consent.gpp_opts_out(header + "~BAAAAAAA")  # unreadable: refuses, as any unreadable string
