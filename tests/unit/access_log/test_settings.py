"""The `logging:` section: the access log's format, rotation and retention (C3, C9, C11)."""

from __future__ import annotations

import pytest

from privproxy import schema
from privproxy.access_log import settings
from privproxy.access_log.formats import FORMAT_CHOICES
from privproxy.access_log.rotation import Rotation
from privproxy.errors import ConfigErrors
from tests.sections import parse_section


def parse(text: str) -> settings.Settings:
    return parse_section(settings.parse, "logging", text)


@pytest.mark.parametrize("text", ["{}\n", "logging:\n", "logging: {rotation: {}}\n"])
def test_left_out_it_is_the_settings_defaults(text):
    assert parse(text) == settings.Settings() == settings.Settings("json", Rotation(True, None, 30))


def test_every_key():
    s = parse("logging: {format: both, rotation: {daily: false, max_size_mb: 10}, retention_days: 0}\n")
    assert s == settings.Settings("both", Rotation(daily=False, max_bytes=10 * 1024 * 1024, retention_days=None))


def test_mistakes():
    with pytest.raises(ConfigErrors) as e:
        parse("logging: {format: jsn, rotation: {max_size_mb: -1}}\n")
    assert [str(x) for x in e.value.errors] == [
        "f.yaml:1:19: logging.format: `jsn` is not allowed — did you mean `json`?",
        "f.yaml:1:48: logging.rotation.max_size_mb: -1 is out of range — use a value from 0 to None"]


def test_the_schema_states_the_settings_defaults():
    d = settings.Settings()
    assert schema.node("logging") is settings.SCHEMA
    assert schema.node("logging.format").enum == FORMAT_CHOICES and schema.node("logging.format").default == d.format
    assert schema.node("logging.rotation.daily").default == d.rotation.daily
    assert schema.node("logging.rotation.max_size_mb").default == 0 and d.rotation.max_bytes is None
    assert schema.node("logging.retention_days").default == d.rotation.retention_days
