"""Chinese on a screen without a CJK font: the dashboard serves the font its PDF reports embed
(WenQuanYi Micro Hei, ``dashboard/static/fonts/``) and every page's stack falls back to it for
CJK characters only (``app.css`` ``evalwatch-cjk``).  This machine's Chromium has no CJK font, so
without it every Chinese label is a row of boxes.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dashboard.app import STATIC, create_app
from testkit.dashboard import add_event, dashboard_in_chromium, make_services, ui_login

FONT = STATIC / "fonts" / "wqy-microhei.woff2"


#: Width of each element's text over (characters x font size): CJK ideographs are one em wide in
#: every CJK font; the boxes Chromium draws when it has no glyph are 0.6 em.
EM_RATIOS = """(sel) => [...document.querySelectorAll(sel)].filter(n => n.offsetParent).map(n => {
  const r = document.createRange(); r.selectNodeContents(n);
  const w = [...r.getClientRects()].reduce((a, x) => a + x.width, 0);
  return [n.textContent, w / (n.textContent.length * parseFloat(getComputedStyle(n).fontSize))];
})"""

#: The same ratio for text drawn on a canvas in the font ECharts was given for a chart.
CHART_EM_RATIO = """(id) => {
  const chart = window.echarts.getInstanceByDom(document.getElementById(id));
  const ctx = document.createElement("canvas").getContext("2d");
  const style = chart.getOption().textStyle;
  // unset: ECharts' default, sans-serif
  ctx.font = "20px " + ((Array.isArray(style) ? style[0] : style)?.fontFamily || "sans-serif");
  return ctx.measureText("统计分析").width / 80;
}"""


async def test_the_font_is_public_static_and_a_woff2(tmp_path: Path) -> None:
    """Served without a login (the login page needs it too), as WOFF2, cacheable."""
    app = create_app(make_services(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        r = await c.get("/static/fonts/wqy-microhei.woff2")
        assert r.status_code == 200
        assert r.headers["content-type"] == "font/woff2"
        assert r.content[:4] == b"wOF2" and r.content == FONT.read_bytes()
        assert "etag" in r.headers
        css = (await c.get("/static/app.css")).text
        assert "/static/fonts/wqy-microhei.woff2" in css and "evalwatch-cjk" in css


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_chinese_is_drawn_with_glyphs_in_the_page_and_on_the_charts(tmp_path: Path) -> None:
    """In Chinese the login page's and the dashboard's titles and labels are laid out one em per
    character (glyphs, not boxes), on the first visit and from the cache, and the statistics
    charts draw with the page's font (a canvas has no font fallback of its own)."""
    async with dashboard_in_chromium(make_services(tmp_path), 1280, 700) as b:

        async def login_page() -> None:
            await b.page.goto(b.url + "/login")
            await b.page.wait_for_function("() => document.getElementById('login-submit').textContent !== ''")
            await b.page.evaluate("document.fonts.ready.then(() => true)")
            ratios = await b.page.evaluate(EM_RATIOS, ".login-box h1, .login-box label span, #login-submit")
            assert len(ratios) == 4 and all(0.95 < r < 1.05 for _t, r in ratios), ratios

        await login_page()  # the first page: the font is not in the browser's cache yet
        await ui_login(b.page, b.url, "admin")
        assert (await b.page.evaluate("document.documentElement.lang")).startswith("zh")
        await b.page.evaluate("document.fonts.ready.then(() => true)")
        ratios = await b.page.evaluate(EM_RATIOS, ".topbar h1, #nav button")
        assert len(ratios) >= 10 and all(0.95 < r < 1.05 for _t, r in ratios), ratios
        await login_page()  # from its cache (where its title kept the boxes)
        await ui_login(b.page, b.url, "admin")

        await b.page.goto(b.url + "/#stats")
        await b.page.wait_for_function("() => (window.evalwatch.stats?.rendered || 0) >= 1", timeout=20_000)
        for chart in ("chart-rule", "chart-site"):
            assert 0.95 < await b.page.evaluate(CHART_EM_RATIO, chart) < 1.05, chart

        await b.page.click("#lang-switch")  # English: the language button still says 中文
        await b.page.wait_for_function("() => document.documentElement.lang === 'en'")
        await b.page.evaluate("document.fonts.ready.then(() => true)")
        [(text, ratio)] = await b.page.evaluate(EM_RATIOS, "#lang-switch")
        assert text == "中文" and 0.95 < ratio < 1.05
        assert b.errors == [] and b.console == []


#: The elements of a selector, each as [its id, view or text, the number of lines its text is on].
LINES = """(sel) => [...document.querySelectorAll(sel)]
  .filter(n => n.offsetParent)
  .map(n => {
    const r = document.createRange(); r.selectNodeContents(n);
    const tops = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
    return [n.id || n.dataset.view || n.textContent, tops.size];
  })"""

#: Every top-bar label whose text must stay on one line.
TOP_BAR_LABELS = (".topbar h1, #nav button, .userbox label.sound, #me-name, #me-role, .userbox a,"
                  " #lang-switch, #logout")


@pytest.mark.browser
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_top_bar_labels_never_break_and_the_bar_is_one_row_on_a_laptop(tmp_path: Path) -> None:
    """At 1920, 1366 and 1024 px, in Chinese and in English, for the admin (ten views) and a
    supervisor: no label of the top bar is broken over two lines (the nav wraps whole buttons,
    the user box moves below when there is no room); at 1366 x 768 a supervisor's bar is one row
    in Chinese (it was two, with "声音提示", "API 文档" and "退出" broken)."""
    async with dashboard_in_chromium(make_services(tmp_path), 1366, 768) as b:
        for role in ("supervisor", "admin"):
            await ui_login(b.page, b.url, role)
            for lang in ("zh", "en"):
                if not (await b.page.evaluate("document.documentElement.lang")).startswith(lang):
                    await b.page.click("#lang-switch")
                    await b.page.wait_for_function(
                        "(lang) => document.documentElement.lang.startsWith(lang)", arg=lang)
                await b.page.evaluate("document.fonts.ready.then(() => true)")
                for width in (1920, 1366, 1024):
                    await b.page.set_viewport_size({"width": width, "height": 768})
                    await b.page.wait_for_timeout(100)
                    lines = await b.page.evaluate(LINES, TOP_BAR_LABELS)
                    assert len(lines) >= 10, lines
                    broken = [name for name, n in lines if n != 1]
                    assert broken == [], (role, lang, width, broken)
                    height = await b.page.evaluate("document.querySelector('.topbar').offsetHeight")
                    if width == 1920 or (width == 1366 and role == "supervisor" and lang == "zh"):
                        assert height < 50, (role, lang, width, height)
        assert b.errors == [] and b.console == []


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
async def test_wall_tile_names_and_alert_badges_stay_whole(tmp_path: Path) -> None:
    """A tile with three kinds of open alert at 1366 px: the camera's name and each badge ("座位多人
    1") are on one line each — the badges wrap as whole badges (they broke inside, "座位多 / 人 1")."""
    services = make_services(tmp_path)
    for seat, rule in (("s1", "phone"), ("s2", "extra_person"), ("s3", "seat_empty")):
        add_event(services.db, seat=seat, rule=rule)
    async with dashboard_in_chromium(services, 1366, 768) as b:
        await ui_login(b.page, b.url, "supervisor")
        for _lang in ("zh", "en"):
            await b.page.wait_for_function("() => document.querySelectorAll('.tile .badge').length === 3")
            await b.page.evaluate("document.fonts.ready.then(() => true)")
            found = await b.page.evaluate(LINES, ".tile .label > span:first-child, .tile .badge")
            assert len(found) >= 4 + 3 and all(n == 1 for _t, n in found), found
            await b.page.click("#lang-switch")
    assert b.errors == [] and b.console == []
