"""i18n: both dictionaries have the same keys, templates and scripts carry no untranslated text."""

from __future__ import annotations

import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

from dashboard.errors import MESSAGES

ROOT = Path(__file__).resolve().parents[1] / "dashboard"
LANGS = ("zh-CN", "en")
HTML = sorted((ROOT / "static").glob("*.html"))
JS = sorted((ROOT / "static").glob("*.js"))


def load(lang: str) -> dict[str, str]:
    return json.loads((ROOT / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def has_letters(s: str) -> bool:
    return any(unicodedata.category(ch).startswith("L") for ch in s)


def test_dictionaries_have_the_same_keys_and_no_empty_values() -> None:
    zh, en = load("zh-CN"), load("en")
    assert set(zh) == set(en), f"only zh: {set(zh) - set(en)}, only en: {set(en) - set(zh)}"
    assert all(v.strip() for v in zh.values()) and all(v.strip() for v in en.values())
    # the Chinese dictionary is really Chinese (not English copied over) for most strings
    cjk = [k for k, v in zh.items() if re.search(r"[\u4e00-\u9fff]", v)]
    assert len(cjk) > 0.9 * len(zh), [k for k in zh if k not in cjk]


def test_every_error_code_is_translated() -> None:
    for lang in LANGS:
        d = load(lang)
        missing = set(MESSAGES) - set(d)
        assert not missing, f"{lang} lacks {missing}"


class _Scan(HTMLParser):
    """Collects text that is not inside an element carrying data-i18n, and literal attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.problems: list[str] = []
        self.keys: set[str] = set()

    VOID: ClassVar[set[str]] = {"meta", "link", "input", "br", "img", "hr", "source"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for k in ("data-i18n", "data-i18n-title", "data-i18n-placeholder"):
            if a.get(k):
                self.keys.add(str(a[k]))
        for attr in ("placeholder", "title", "alt", "aria-label"):
            if a.get(attr) and has_letters(str(a[attr])):
                self.problems.append(f"<{tag} {attr}={a[attr]!r}> is a literal; use data-i18n-{attr}")
        if tag not in self.VOID:
            self.stack.append((tag, "data-i18n" in a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if not has_letters(data):
            return
        if self.stack and self.stack[-1][0] in ("script", "style"):
            return
        if not (self.stack and self.stack[-1][1]):
            self.problems.append(
                f"untranslated text {data.strip()!r} inside <{self.stack[-1][0] if self.stack else '?'}>"
            )


@pytest.mark.parametrize("page", HTML, ids=lambda p: p.name)
def test_templates_use_no_untranslated_literals(page: Path) -> None:
    scan = _Scan()
    scan.feed(page.read_text(encoding="utf-8"))
    assert not scan.problems, "\n".join(scan.problems)
    d = load("en")
    assert scan.keys, "page uses no i18n keys"
    assert scan.keys <= set(d), f"unknown keys {scan.keys - set(d)}"


def test_scripts_use_known_keys_and_no_literal_ui_text() -> None:
    d = load("en")
    used: set[str] = set()
    for js in JS:
        src = js.read_text(encoding="utf-8")
        assert not re.search(r"[\u4e00-\u9fff]", src), f"{js.name} contains Chinese text: use the dictionary"
        used |= set(re.findall(r"\bt\(\s*\"([a-z_]+\.[a-z_.]+)\"", src))
        # textContent / title / placeholder must never be set to a literal with words in it
        for m in re.finditer(r"\.(textContent|title|placeholder)\s*=\s*\"([^\"]*)\"", src):
            assert not has_letters(m.group(2)), f"{js.name}: literal UI text {m.group(0)!r}"
        for m in re.finditer(r"el\(\"\w+\",\s*\"[^\"]*\",\s*\"([^\"]*)\"\)", src):
            assert not has_letters(m.group(1)), f"{js.name}: literal UI text {m.group(0)!r}"
    assert used, "no t(...) calls found"
    assert used <= set(d), f"scripts use unknown keys {used - set(d)}"


def test_dynamic_key_families_are_complete() -> None:
    d = load("en")
    rules = ("extra_person", "phone", "seat_empty", "camera_tamper", "camera_offline", "unknown")
    families = {
        "rule": rules,
        "status": ("new", "acknowledged", "resolved", "false_alarm"),
        "role": ("admin", "supervisor", "auditor", "observer"),
        "kind": ("covered", "defocused", "moved", "frozen"),
        "agentflag": ("ok", "clock", "spool", "silent"),  # capture.agentstatus flags (agents.js)
        # notices in the room and the notifications' delivery log (notices.js)
        "noticestate": ("pending", "shown", "not_shown"),
        "nstatus": ("pending", "sent", "retry", "failed"),
        "nsource": ("event", "warning"),
        "channel": ("webhook", "wecom", "dingtalk", "email"),
    }
    for fam, names in families.items():
        for n in names:
            assert f"{fam}.{n}" in d, f"missing {fam}.{n}"


def test_every_view_is_its_own_section_of_the_body() -> None:
    """Each ``<section class="view">`` of the dashboard is a direct child of ``<body>`` (a view
    left unclosed swallows the next one, which then never shows), and every element that is
    opened is closed."""
    void = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    class Sections(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.views: list[tuple[str, list[str]]] = []
            self.errors: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "section" and "view" in (a.get("class") or "").split():
                self.views.append((a.get("id") or "?", list(self.stack)))
            if tag not in void:
                self.stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if tag in void:
                return
            if not self.stack or self.stack[-1] != tag:
                self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else '-'}> "
                                   f"at line {self.getpos()[0]}")
                if tag in self.stack:
                    while self.stack.pop() != tag:
                        pass
                return
            self.stack.pop()

    p = Sections()
    p.feed((ROOT / "static" / "index.html").read_text(encoding="utf-8"))
    assert not p.errors, p.errors
    assert p.views and all(parents == ["html", "body"] for _, parents in p.views), p.views
