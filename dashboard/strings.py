"""The UI's strings: ``dashboard/i18n/<lang>.json``, one dictionary per language (zh-CN, en).

Served to browsers by ``GET /api/i18n/{lang}`` (``dashboard.app``); read on the hub where a file
it writes carries UI words (the audit-log export's action names).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

I18N = Path(__file__).resolve().parent / "i18n"
LANGS = ("zh-CN", "en")


@cache
def load_dictionary(lang: str) -> dict[str, str]:
    """The UI strings of ``lang`` (``dashboard/i18n/<lang>.json``)."""
    return dict(json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8")))
