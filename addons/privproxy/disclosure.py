"""[disclosure] Who publishes the privacy notice, and which clauses of their policy each control keeps (C7).

`privproxy report` renders the notice; this section says who the controller is, how to reach them and from when
the notice applies. The promises and the policy clauses each control (C1-C15, the ids rules name in `controls:`)
enforces come from a file the company edits (`controls_file`; docs/controls.yaml is the map of the policies this
project started from), never from code: another company's policy has other clauses.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privproxy.schema_types import CONTROL, CONTROL_PATTERN, arr, obj, string, table
from privproxy.yamlsrc import beside, load_text, root

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

LANGS = ("en", "ja")
TEXT_KEYS = ("controller", "representative", "address", "contact", "privacy_officer", "policy_url")


@dataclass(frozen=True, slots=True)
class Control:
    id: str  # C1-C15
    promise: tuple[tuple[str, str], ...]  # (language, text)
    clauses: tuple[str, ...]  # "001 §9.2.1": a document id of `documents` and the clause in it

    def text(self, lang: str) -> str:
        return _in(self.promise, lang)


def _in(texts: tuple[tuple[str, str], ...], lang: str) -> str:
    got = dict(texts)
    return got.get(lang) or got.get("en") or next(iter(got.values()), "")


@dataclass(frozen=True, slots=True)
class Controls:
    path: str = ""
    documents: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (id, ((language, title), ...))
    controls: tuple[Control, ...] = ()

    def documents_in(self, lang: str) -> tuple[tuple[str, str], ...]:
        return tuple((d, _in(titles, lang)) for d, titles in self.documents)

    def get(self, cid: str) -> Control | None:
        return next((c for c in self.controls if c.id == cid), None)


@dataclass(frozen=True, slots=True)
class Settings:
    """Empty strings: not stated (the report then says what is missing before it can be published)."""

    controller: str = ""
    representative: str = ""
    address: str = ""
    contact: str = ""
    privacy_officer: str = ""
    policy_url: str = ""
    effective_date: str = ""  # YYYY-MM-DD
    purposes: tuple[str, ...] = ()
    translations: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # (language, ((key, value), ...))
    controls: Controls = Controls()

    @property
    def configured(self) -> bool:
        return bool(self.controller)

    def text(self, key: str, lang: str) -> Any:
        """A field in `lang` when the section gives one (`ja: {controller: ...}`), else as written."""
        for language, values in self.translations:
            if language == lang:
                got = dict(values).get(key)
                if got:
                    return got
        return getattr(self, key)


DEFAULT = Settings()
_TEXTS = {
    "controller": string("The business that decides why and how the data is processed (GDPR controller, APPI "
                         "個人情報取扱事業者), as it is named in the notice."),
    "representative": string("Its representative (APPI Art. 32 asks for the name of the representative)."),
    "address": string("Its address."),
    "contact": string("Where visitors send questions and requests about their data (a mail address, a form, a "
                      "postal address)."),
    "privacy_officer": string("The data protection officer or person in charge of personal information, if any."),
    "policy_url": string("Where the privacy policy this notice belongs to is published."),
    "purposes": arr("What the access information is used for, one purpose a line.", string("A purpose.")),
}
TRANSLATION = obj("The same fields in this language, where they differ (a Japanese company name, a translated "
                  "purpose).", dict(_TEXTS))
SCHEMA = obj("Who publishes the privacy notice (`privproxy report`) and from when it applies (C7).", {
    **_TEXTS,
    "effective_date": string("The day the notice applies from, YYYY-MM-DD.", pattern=r"^\d{4}-\d{2}-\d{2}$"),
    "controls_file": string("A YAML file (relative to this one) that names, for each control C1-C15, the promise "
                            "of your privacy policy it keeps and the clauses it comes from; docs/controls.yaml is an "
                            "example. Without it the report lists what each control does, without clauses."),
    "en": TRANSLATION,
    "ja": TRANSLATION,
})

# The controls file: its own small schema, read with the same line-keeping reader.
CONTROL_ENTRY = obj("What a control promises and where the promise is written.", {
    "promise": table("The promise in each language (en, ja).", string("The promise.")),
    "clauses": arr("The clauses it comes from: a document id, then the clause (`001 §9.2.1`).", string("A clause.")),
})
CONTROLS_FILE = obj("The promises of a privacy policy and the controls that keep them.", {
    "documents": table("The policy documents the clauses cite: id -> title, or id -> {en: title, ja: title}.",
                       string("The document's title.")),
    "controls": table(f"Control id ({CONTROL_PATTERN}) -> its promise and clauses.", CONTROL_ENTRY),
})


def parse(node: Node | None, path: str) -> Settings:
    """The `disclosure:` section of the filters.yaml at `path`."""
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    values: dict[str, Any] = {k: _text(m[k]) for k in TEXT_KEYS if k in m}
    if "purposes" in m:
        values["purposes"] = m["purposes"].strings()
    if not values.get("controller"):
        node.error("the controller is missing", "add `controller: Your Company Ltd.`: the notice says who is "
                                                "responsible for the data")
    if not values.get("contact"):
        node.error("the contact is missing", "add `contact: privacy@example.com` (or a form's address): the notice "
                                             "says where visitors send questions and requests")
    if "effective_date" in m:
        values["effective_date"] = _date(m["effective_date"])
    translations = []
    for lang in LANGS:
        if lang in m:
            t = m[lang].mapping(TRANSLATION.props)
            got: list[tuple[str, Any]] = [(k, _text(t[k])) for k in TEXT_KEYS if k in t]
            if "purposes" in t:
                got.append(("purposes", t["purposes"].strings()))
            translations.append((lang, tuple(got)))
    controls = Controls()
    if "controls_file" in m:
        name = _text(m["controls_file"])
        if name:
            controls = load_controls(beside(path, name), m["controls_file"])
    return Settings(**values, translations=tuple(translations), controls=controls)


def _text(n: Node) -> str:
    return n.string().strip()


def _texts(n: Node) -> tuple[tuple[str, str], ...]:
    """A text in one language (a string: every language) or several (`{en: ..., ja: ...}`)."""
    if not isinstance(n.value, dict):
        text = _text(n)
        return (("en", text),) if text else ()
    out = []
    for lang, v in n.items():
        if lang not in LANGS:
            v.error(f"`{lang}` is not a language the report is written in", f"use {' or '.join(LANGS)}")
        elif _text(v):
            out.append((lang, _text(v)))
    return tuple(out)


def _date(n: Node) -> str:
    """A date as YAML reads `2026-12-01` (a date) or as a quoted string."""
    if isinstance(n.value, datetime.datetime):
        return n.value.date().isoformat()
    if isinstance(n.value, datetime.date):
        return n.value.isoformat()
    text = n.string()
    try:
        return datetime.date.fromisoformat(text).isoformat() if len(text) == 10 else _bad_date(n, text)
    except ValueError:
        return _bad_date(n, text)


def _bad_date(n: Node, text: str) -> str:
    n.error(f"`{text}` is not a date", "write it as YYYY-MM-DD, e.g. 2026-12-01")
    return ""


def _key_at(mapping: Any, key: str, n: Node) -> tuple[int, int]:
    """Where a key is written (its value may start a line below)."""
    try:
        line, col = mapping.lc.key(key)
        return line + 1, col + 1
    except (AttributeError, KeyError, TypeError):
        return n.line, n.col


def load_controls(path: str, at: Node) -> Controls:
    """The controls file: errors name its own lines; a missing file is an error at `controls_file`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        at.error(f"cannot read {path} ({getattr(e, 'strerror', None) or e})",
                 "give the path of your controls file, relative to filters.yaml (docs/controls.yaml is an example)")
        return Controls()
    data = load_text(text, path)  # a YAML syntax error names the file, line and column
    top = root(data, path)
    m = top.mapping(CONTROLS_FILE.props)
    documents = tuple((str(k), _texts(v)) for k, v in m["documents"].items()) if "documents" in m else ()
    known = {d for d, _ in documents}
    controls = []
    for cid, n in (m["controls"].items() if "controls" in m else ()):
        if not CONTROL.match(cid):
            line, col = _key_at(m["controls"].value, cid, n)
            top.errors.add(f"controls.{cid}: `{cid}` is not a control",
                           line, col, "controls are C1 to C15, the ids filters.yaml rules name")
            continue
        e = n.mapping(CONTROL_ENTRY.props)
        promise = _texts(e["promise"]) if "promise" in e else ()
        if not promise:
            n.error("no promise", "add `promise: {en: ..., ja: ...}`: the clause's promise in a sentence")
        clauses = e["clauses"].strings() if "clauses" in e else ()
        for c, cn in zip(clauses, e["clauses"].seq() if "clauses" in e else [], strict=False):
            doc = c.split(" ", 1)[0]
            if known and doc not in known:
                cn.error(f"`{c}` cites the document `{doc}`, which `documents` does not name",
                         f"documents: {', '.join(sorted(known))}")
        controls.append(Control(cid, promise, clauses))
    top.errors.raise_if_any()
    return Controls(path, documents, tuple(sorted(controls, key=lambda c: int(c.id[1:]))))


__all__ = ["DEFAULT", "SCHEMA", "Control", "Controls", "Settings", "load_controls", "parse"]
