"""Tests mirror modules 1:1: every module under addons/privproxy has a test file of its own (design §12), found
where its layer's tests live:

    privproxy/mitm/x.py     tests/mitm/test_x.py
    privproxy/cli/x.py      tests/unit/test_cli_x.py
    privproxy/pkg/x.py      tests/unit/pkg/test_x.py or tests/unit/test_x.py
    privproxy/x.py          tests/unit/test_x.py

(`__init__.py` and `__main__.py` excepted.) WITHOUT_OWN_TESTS is the debt: modules that have none yet. It only
shrinks: an entry whose test file now exists must go, and a new module cannot join it without raising CEILING
in the same change, where a reviewer sees it.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "addons" / "privproxy"
TESTS = REPO / "tests"

WITHOUT_OWN_TESTS = frozenset({
    "access_log/formats.py",  # covered by tests/unit/test_sink.py, tests/e2e/test_logs.py
    "access_log/lock.py",
    "access_log/rotation.py",
    "beacon.py",  # covered by tests/unit/vendors/*
    "cli/common.py",
    "cli/demo.py",
    "cli/dsr.py",  # the e2e and unit dsr tests drive it
    "cli/explain.py",  # tests/e2e/test_explain.py
    "cli/filter_log.py",  # tests/e2e/test_filter_log.py
    "cli/run.py",  # every e2e test starts it
    "cli/schema.py",
    "demo/site.py",
    "errors.py",
    "pipeline.py",  # covered by tests/mitm/* and tests/unit/test_explain.py
    "vendors/adobe.py",  # the vendors: tests/unit/vendors/test_codecs.py, test_recordings.py, test_fuzz.py
    "vendors/amplitude.py",
    "vendors/base.py",
    "vendors/ga4.py",
    "vendors/matomo.py",
    "vendors/meta_pixel.py",
    "vendors/mixpanel.py",
    "vendors/plausible.py",
    "vendors/posthog.py",
    "vendors/segment.py",
    "vendors/snowplow.py",
    "vendors/universal_analytics.py",
})
CEILING = 26  # len(WITHOUT_OWN_TESTS) when the list was written; lower it as entries go, never raise it


def modules() -> list[str]:
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts)


def own_test_files(module: str) -> list[Path]:
    path = Path(module)
    name = f"test_{path.stem}.py"
    if path.parent == Path("mitm"):
        return [TESTS / "mitm" / name]
    if path.parent == Path("cli"):
        return [TESTS / "unit" / f"test_cli_{path.stem}.py"]
    return [TESTS / "unit" / path.parent / name, TESTS / "unit" / name]


def has_own_tests(module: str) -> bool:
    return any(p.is_file() for p in own_test_files(module))


def test_every_module_has_a_test_file_of_its_own():
    missing = [m for m in modules() if m not in WITHOUT_OWN_TESTS and not has_own_tests(m)]
    assert missing == [], f"add {[str(own_test_files(m)[0].relative_to(REPO)) for m in missing]}"


def test_the_allow_list_only_shrinks():
    stale = sorted(m for m in WITHOUT_OWN_TESTS if m not in modules() or has_own_tests(m))
    assert stale == [], f"remove from WITHOUT_OWN_TESTS (and lower CEILING): {stale}"
    assert len(WITHOUT_OWN_TESTS) <= CEILING, "the debt grew: write the test file instead"
