"""The report in a real browser: headless Chromium opens the page, every figure decodes, nothing errors.

Chromium is driven over the DevTools protocol (tests/chromium_cdp.py), so what is checked is what the
browser saw — console calls, uncaught exceptions, log errors, requests — not what the page says of
itself. Screenshots go to tests/artifacts/ (ignored by git) and to $MODELSPACE_ARTIFACTS when set.

Needs Debian's `chromium` package (`apt-get install chromium`). Without it the tests skip, except
when $CI is set: there a missing browser fails, so CI cannot pass by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from chromium_cdp import IMAGES_JS, Browser, find_chromium
from report_fixtures import TRUTH, large_report, toy_space

from modelspace.report import from_space, write_report

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        message = "chromium not found (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the browser test, not skip it")
        pytest.skip(message)
    with Browser(executable) as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pages")
    space = toy_space(root / "store")
    return {"5": write_report(from_space(space, truth=TRUTH), root / "report_5.html"),
            "200": write_report(large_report(200), root / "report_200.html")}


def keep(path: Path) -> Path:
    """Copy a screenshot to $MODELSPACE_ARTIFACTS too, when CI asks for it."""
    target = os.environ.get("MODELSPACE_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


@pytest.mark.parametrize("size, n_images", [("5", 2 + 9 + 1 + 1 + 3), ("200", 6 + 1 + 1 + 2)])
def test_report_opens_cleanly_in_chromium(browser, pages, size, n_images) -> None:
    browser.open(pages[size])
    seen = browser.evaluate(IMAGES_JS)
    assert seen["n"] == n_images
    assert seen["broken"] == [], f"images that did not decode: {seen['broken']}"
    assert all(w > 100 and h > 100 for w, h in seen["sizes"])
    assert {"space", "sources", "evaluation", "settings"} <= set(seen["sections"])
    assert seen["external"] == []
    assert browser.problems() == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requests()), browser.requests()
    shot = keep(browser.screenshot(ARTIFACTS / f"report_{size}.png"))
    assert shot.stat().st_size > 20_000
    keep(browser.screenshot(ARTIFACTS / f"report_{size}_full.png", full_page=True))


def test_heatmap_hover_shows_the_pair_and_value_under_the_pointer(browser, pages) -> None:
    browser.open(pages["200"])
    data = browser.evaluate("JSON.parse(document.getElementById("
                            "document.querySelector('img[data-hover]').dataset.hover).textContent)")
    box, n = data["box"], len(data["labels"])
    for i, j in [(3, 150), (199, 0), (120, 120)]:
        # Scroll the cell's centre to the middle of the window, then point at it.
        x, y = browser.evaluate(f"""(() => {{
          const img = document.querySelector("img[data-hover]");
          const at = r => [r.left + img.clientLeft + img.clientWidth * ({box["left"]} + {box["width"]} * {j + 0.5} / {n}),
                           r.top + img.clientTop + img.clientHeight * ({box["top"]} + {box["height"]} * {i + 0.5} / {n})];
          window.scrollBy(0, at(img.getBoundingClientRect())[1] - window.innerHeight / 2);
          return at(img.getBoundingClientRect());
        }})()""")
        browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        tip = browser.evaluate("document.getElementById('tip').textContent")
        assert tip == f"{data['labels'][i]} \u2194 {data['labels'][j]}: {data['values'][i][j]:.3f}"
    assert browser.problems() == []


def test_the_check_catches_broken_images_and_script_errors(browser, tmp_path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><section id="space"></section>'
                    '<img alt="truncated" src="data:image/png;base64,iVBORw0KGgoAAAA">'
                    '<script>console.error("something failed"); null.x;</script></body></html>')
    browser.open(page)
    seen = browser.evaluate(IMAGES_JS)
    assert seen["broken"] == ["truncated"]
    problems = browser.problems()
    assert any(p.startswith("console.error: something failed") for p in problems)
    assert any(p.startswith("exception: TypeError") for p in problems), json.dumps(problems)
