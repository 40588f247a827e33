"""Derive the dashboard's CJK web font from the report font (``make fonts``; not run by the hub).

    python dashboard/webfont.py    # in a venv with fontTools and brotli (the Makefile makes one)

Face 0 of ``sessions/fonts/wqy-microhei.ttc`` (WenQuanYi Micro Hei, the font the PDF reports
embed) as WOFF2 in ``dashboard/static/fonts/wqy-microhei.woff2``: glyphs and metrics unchanged,
``head`` dates kept (the same bytes on every run), the FontForge timestamp table ``FFTM`` dropped
(Chromium's font sanitiser, OTS, refuses the collection itself: "FFTM: misaligned table").
5,177,387 bytes of collection → 1,386,684 bytes of WOFF2 (37 s).
``app.css`` uses it only for CJK characters no system font has
(docs/dashboard.md "Chinese without a CJK font").
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "sessions" / "fonts" / "wqy-microhei.ttc"
TARGET = ROOT / "dashboard" / "static" / "fonts" / "wqy-microhei.woff2"


def main() -> None:
    from fontTools.ttLib import TTCollection

    face = TTCollection(str(SOURCE), recalcTimestamp=False).fonts[0]  # reproducible
    assert face["name"].getDebugName(4) == "WenQuanYi Micro Hei", face["name"].getDebugName(4)
    if "FFTM" in face:
        del face["FFTM"]
    face.flavor = "woff2"
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    face.save(str(TARGET))
    print(f"{TARGET.relative_to(ROOT)}: {TARGET.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
