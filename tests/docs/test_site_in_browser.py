"""The built documentation in a real browser: headless Chromium opens the home page, a user-guide page and
an API page, and each renders: no console error or uncaught exception, no request that failed (a missing
stylesheet, script, font or image), the theme's stylesheet applied and the page's main content there.

Screenshots go to tests/artifacts/docs_*.png and $MODELSPACE_ARTIFACTS when set; their small palette
versions are committed (`git add -f`), like the report's (tests/report/test_browser.py). Needs Debian's
`chromium`; without it the tests skip, except when $CI is set: there a missing browser fails.
"""

from __future__ import annotations

import pytest

from support.artifacts import ARTIFACTS, keep, modest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = {"home": "index.html", "guide": "guide/store.html", "api": "api/space.html"}

CONTENT_JS = """(() => {
  const main = document.querySelector("main article") || document.querySelector("main");
  const title = main && main.querySelector("h1");
  return {
    title: title ? title.textContent.replace(/[#¶]/g, "").trim() : null,
    text: main ? main.innerText.trim().length : 0,
    navigation: document.querySelectorAll(".bd-sidebar-primary a, .bd-header a").length,
    themed: getComputedStyle(document.body).getPropertyValue("--pst-color-primary").trim() !== "",
    stylesheets: Array.from(document.styleSheets).length,
    broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  };
})()"""


@pytest.mark.parametrize("name", list(PAGES))
def test_the_page_renders_in_chromium(site, browser, name) -> None:
    assert site["returncode"] == 0, site["output"][-4000:]
    page = site["html"] / PAGES[name]
    browser.open(page)
    seen = browser.evaluate(CONTENT_JS)
    assert browser.problems() == []
    assert browser.failed_requests() == []
    local = [url for url in browser.requests() if url.startswith("file:")]
    assert len(local) >= 5, browser.requests()  # the page, the theme's styles and scripts
    assert seen["themed"] and seen["stylesheets"] >= 3, seen  # the PyData theme's CSS variables are set
    assert seen["title"] and seen["text"] > len(seen["title"]) + 20, seen  # content under its title
    assert seen["navigation"] >= 5, seen
    assert seen["broken"] == []
    shot = keep(browser.screenshot(ARTIFACTS / f"docs_{name}.png"))
    assert shot.stat().st_size > 20_000
    assert modest(shot).stat().st_size < 400_000


def test_the_check_catches_a_missing_stylesheet_and_a_script_error(browser, tmp_path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="_static/missing.css"></head>'
                    '<body><main><h1>t</h1></main><script>console.error("failed"); null.x;</script></body></html>')
    browser.open(page)
    assert any("missing.css" in failure for failure in browser.failed_requests())
    problems = browser.problems()
    assert any(p.startswith("console.error: failed") for p in problems)
    assert any(p.startswith("exception: TypeError") for p in problems)
