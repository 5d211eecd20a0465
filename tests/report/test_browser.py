"""The report in a real browser: headless Chromium opens the page, every figure decodes, nothing errors.

Chromium is driven over the DevTools protocol (tests/support/chromium_cdp.py), so what is checked is what the
browser saw — console calls, uncaught exceptions, log errors, requests — not what the page says of
itself. Screenshots go to tests/artifacts/ and to $MODELSPACE_ARTIFACTS when set; the two of the top of a
demo-like page (30 models, the demo's seven estimators and three attribution grids) and of a 200-model page,
and of their Model space section, shrunk to a palette PNG (`modest`), are committed (`git add -f`: the folder is otherwise ignored). The MDS
names are drawn into the figure, not DOM elements: tests/report/test_page.py checks their boxes do not overlap.

Needs Debian's `chromium` package (`apt-get install chromium`). Without it the tests skip, except
when $CI is set: there a missing browser fails, so CI cannot pass by skipping.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.chromium_cdp import IMAGES_JS
from support.reports import TRUTH, large_report, toy_space
from support.artifacts import ARTIFACTS, keep, modest

from modelspace.evaluation import pair_agreement
from modelspace.report import from_space, write_report
from modelspace.report.page import comparisons_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pages")
    return {"5": from_space(toy_space(root / "store"), truth=TRUTH), "demo30": large_report(30, demo_like=True),
            "200": large_report(200), "root": root}


@pytest.fixture(scope="module")
def pages(reports) -> dict[str, Path]:
    return {size: write_report(data, reports["root"] / f"report_{size}.html")
            for size, data in reports.items() if size != "root"}


# Images: grids; heatmap, map and tree per estimator; two estimators compared (the pair's two heatmaps and
# trees shown again, then per pair of the first method with each other estimator its difference matrix and
# curves, and the oracle's curves); P@K curves; truth's tree; estimated trees (not repeated beyond 30 tasks);
# tree agreement.
@pytest.mark.parametrize("size, n_images", [("5", 2 + 3 * 3 + (4 + 2 * 2 + 1) + 1 + 1 + 3 + 1),
                                            ("demo30", 3 + 7 * 3 + (4 + 6 * 2 + 1) + 1 + 1 + 7 + 1),
                                            ("200", 2 * 3 + (4 + 1 * 2 + 1) + 1 + 1 + 0 + 1)])
def test_report_opens_cleanly_in_chromium(browser, pages, size, n_images) -> None:
    browser.open(pages[size])
    seen = browser.evaluate(IMAGES_JS)
    assert seen["n"] == n_images
    assert seen["broken"] == [], f"images that did not decode: {seen['broken']}"
    assert all(w > 100 and h > 100 for w, h in seen["sizes"])
    assert ["summary"] == seen["sections"][:1]  # the conclusion comes first
    assert {"space", "sources", "evaluation", "settings"} <= set(seen["sections"])
    assert seen["external"] == []
    assert browser.problems() == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requests()), browser.requests()
    summary = browser.evaluate("""(() => {
      const s = document.querySelector("#summary");
      const r = s.getBoundingClientRect();
      return {text: s.querySelector(".conclusion").textContent, top: r.top + window.scrollY,
              items: s.querySelectorAll("li").length};
    })()""")
    assert "ranks sources best" in summary["text"] and summary["items"] >= 3
    assert summary["top"] < 800  # within the first screen
    shot = keep(browser.screenshot(ARTIFACTS / f"report_{size}.png"))
    assert shot.stat().st_size > 20_000
    if size in ("demo30", "200"):
        assert modest(shot).stat().st_size < 400_000
        browser.evaluate("document.getElementById('space').scrollIntoView()")  # the heatmap and the map
        assert modest(keep(browser.screenshot(ARTIFACTS / f"report_{size}_space.png"))).stat().st_size < 400_000
        browser.evaluate("window.scrollTo(0, 0)")
    keep(browser.screenshot(ARTIFACTS / f"report_{size}_full.png", full_page=True))


def test_heatmap_hover_shows_the_affinity_under_the_pointer(browser, pages, reports) -> None:
    browser.open(pages["200"])
    data = browser.evaluate("JSON.parse(document.getElementById("
                            "document.querySelector('img[data-hover]').dataset.hover).textContent)")
    box, n = data["box"], len(data["labels"])
    result = reports["200"].estimators[0]  # the first tab's heatmap
    for i, j in [(3, 150), (199, 0), (120, 120), (57, 58)]:
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
        pair, value = tip.rsplit(": ", 1)
        assert pair == f"{data['labels'][i]} \u2194 {data['labels'][j]}"
        # The value shown is the affinity itself (to the 3 decimals shown), not a colour read back.
        a, b = result.names.index(data["labels"][i]), result.names.index(data["labels"][j])
        assert abs(float(value) - result.affinity[a, b]) <= 0.0005 + 1e-9, (tip, result.affinity[a, b])
    assert np.isclose(result.affinity[0, 0], 1.0)
    assert browser.problems() == []


def test_failures_counter_leads_to_the_failures(browser, tmp_path) -> None:
    data = large_report(12)
    data.settings["failures"] = [{"model": "broken", "method": None, "message": "cannot load broken"}]
    browser.open(write_report(data, tmp_path / "failures.html"))
    browser.evaluate("document.querySelector('.facts a[href=\"#failures\"]').click()")
    top = browser.evaluate("document.getElementById('failures').getBoundingClientRect().top")
    assert abs(top) < 5  # the click scrolled the section to the top of the window
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


def test_a_tree_of_37_leaves_shows_every_leaf_at_its_drawn_size(browser, tmp_path) -> None:
    # The trial: 37 models, and the tree's last 4 leaves were behind a scroll box. Every shown tree must
    # lie whole inside each of its ancestors (nothing clips it) and at its drawn size (nothing shrinks
    # its names).
    browser.open(write_report(large_report(37), tmp_path / "trees.html"))
    trees = browser.evaluate("""(() => Array.from(document.querySelectorAll("img"))
      .filter(img => /tree/.test(img.alt) && img.getClientRects().length)
      .map(img => {
        const r = img.getBoundingClientRect();
        const clipped = [];
        for (let e = img.parentElement; e && e !== document.body; e = e.parentElement) {
          const s = getComputedStyle(e), b = e.getBoundingClientRect();
          if (s.overflowY !== "visible" && (r.top < b.top - 1 || r.bottom > b.bottom + 1)) clipped.push(e.className);
        }
        return {alt: img.alt, clipped, shown: [r.width, r.height], drawn: [img.naturalWidth, img.naturalHeight]};
      }))()""")
    assert {t["alt"] for t in trees} >= {"Similarity tree of saliency", "Ground-truth tree (from its ranks)"}
    for tree in trees:
        assert tree["clipped"] == [], tree
        assert abs(tree["shown"][0] - tree["drawn"][0]) <= 2 and abs(tree["shown"][1] - tree["drawn"][1]) <= 2, tree
    assert browser.problems() == []


def test_the_pair_selector_switches_the_compared_figures(browser, pages, reports) -> None:
    browser.open(pages["demo30"])
    views = reports["demo30"].estimators
    state = """(() => {
      const shown = Array.from(document.querySelectorAll(".pair-panel")).filter(p => !p.hidden);
      const copies = Array.from(document.querySelectorAll("img[data-copy]"));
      return {a: document.getElementById("pair-a").value, b: document.getElementById("pair-b").value,
              panels: shown.map(p => p.dataset.pair),
              drawn: shown.flatMap(p => Array.from(p.querySelectorAll("img")))
                          .map(img => [img.complete, img.naturalWidth, img.alt]),
              copies: copies.map(img => [img.dataset.side, img.dataset.copy, img.naturalWidth,
                                         img.src === document.querySelector(
                                           `img[data-figure="${img.dataset.copy}-${img.dataset.side === "a"
                                             ? document.getElementById("pair-a").value
                                             : document.getElementById("pair-b").value}"]`).src]),
              agreement: document.getElementById("pair-agreement").textContent,
              missing: document.getElementById("pair-missing").hidden};
    })()"""

    def choose(a: int, b: int) -> dict:
        browser.evaluate(f"""(() => {{
          for (const [id, v] of [["pair-a", {a}], ["pair-b", {b}]]) {{
            const s = document.getElementById(id);
            s.value = String(v);
            s.dispatchEvent(new Event("change"));
          }}
        }})()""")
        return browser.evaluate(state)

    first = browser.evaluate(state)
    a, b = int(first["a"]), int(first["b"])
    assert views[a].kind == "method" and views[b].kind != "method"  # the attribution method against a baseline
    assert first["panels"] == [f"{a}-{b}"] and first["missing"]
    assert len(first["drawn"]) == 2 and all(done and width > 100 for done, width, _ in first["drawn"])
    assert {alt for *_, alt in first["drawn"]} == {f"Difference matrix, {views[b].id} − {views[a].id}",
                                                  f"Correlation–Priority Curve, {views[a].id} ranks, {views[b].id} similarity"}
    assert sorted((side, what) for side, what, *_ in first["copies"]) == [("a", "heat"), ("a", "tree"), ("b", "heat"),
                                                                         ("b", "tree")]
    assert all(width > 100 and same for *_, width, same in first["copies"])
    r, n = pair_agreement(views[a], views[b])
    assert first["agreement"].endswith(f"over the {n} models both hold; 1 = the same hierarchy): {r:.2f}.")

    other = next(k for k, v in enumerate(views) if v.kind != "method" and k != b)
    switched = choose(a, other)
    assert switched["panels"] == [f"{a}-{other}"] and switched["missing"]
    assert all(width > 100 and same for *_, width, same in switched["copies"])
    r, _ = pair_agreement(views[a], views[other])
    assert switched["agreement"].endswith(f"{r:.2f}.")

    undrawn = choose(other, b)  # two baselines: not among the pairs drawn
    assert undrawn["panels"] == [] and not undrawn["missing"]
    assert all(same for *_, same in undrawn["copies"])  # the matrices and trees follow the choice all the same
    assert browser.problems() == []


def test_the_difference_matrix_hover_shows_the_difference_under_the_pointer(browser, pages, reports) -> None:
    browser.open(pages["demo30"])
    data = browser.evaluate("JSON.parse(document.getElementById(document.querySelector("
                            "'.pair-panel:not([hidden]) img[data-hover]').dataset.hover).textContent)")
    box, n = data["box"], len(data["labels"])
    pair = comparisons_for(reports["demo30"]).pairs[0]  # the pair the page opens on
    assert data["labels"] == pair.names
    for i, j in [(0, 5), (17, 3), (29, 28)]:
        x, y = browser.evaluate(f"""(() => {{
          const img = document.querySelector(".pair-panel:not([hidden]) img[data-hover]");
          const at = r => [r.left + img.clientLeft + img.clientWidth * ({box["left"]} + {box["width"]} * {j + 0.5} / {n}),
                           r.top + img.clientTop + img.clientHeight * ({box["top"]} + {box["height"]} * {i + 0.5} / {n})];
          window.scrollBy(0, at(img.getBoundingClientRect())[1] - window.innerHeight / 2);
          return at(img.getBoundingClientRect());
        }})()""")
        browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        cell, value = browser.evaluate("document.getElementById('tip').textContent").rsplit(": ", 1)
        assert cell == f"{data['labels'][i]} \u2194 {data['labels'][j]}"
        assert float(value) == pytest.approx(pair.difference[i, j], abs=5e-4 + 1e-9)  # the matrix, not a colour
    assert browser.problems() == []
