"""Issue 14: runtime trials. Each test reproduces a trial of the issue: a model name that broke the
report's scripts, manifest paths outside the store, store errors reported as model failures, models
that end or poison a run, stdout that was not JSON, stale claims, and edited model code."""

from __future__ import annotations

import json
import re

import numpy as np

from modelspace.report import ReportData, write_report
from modelspace.results import MethodResult

# A JSON block as the page writes it; the browser ends it at the first "</script" (any case).
BLOCK = re.compile(r'<script type="application/json" id="(d\d+)">(.*?)</script', re.S | re.I)


# ---------------------------------------------------------------------- item 7: report JSON blocks
def test_a_model_name_with_markup_leaves_every_json_block_intact(tmp_path) -> None:
    """Trial: a model named ``<!--<script>`` put the browser in HTML's "script data double escaped"
    state, so the block's ``</script>`` did not end it: no JSON block parsed and tabs, tooltips and
    the filter stopped working. Only ``</`` was escaped."""
    names = ["<!--<script>", "</script>", "a&b>c\u2028", "plain"]
    affinity = np.array([[1, .5, .2, .1], [.5, 1, .3, .2], [.2, .3, 1, .4], [.1, .2, .4, 1]])
    settings = {"probe": {"n_images": 4, "size": 16, "hash": "0" * 64}, "methods": ["saliency"], "baselines": [],
                "models": [{"name": n, "task": n, "source": "synthetic"} for n in names]}
    page = write_report(ReportData([MethodResult("saliency", names, names, affinity)], settings, title="t"),
                        tmp_path / "report.html", progress=False)
    html = page.read_text(encoding="utf-8")
    blocks = BLOCK.findall(html)
    assert blocks
    found = set()
    for ident, text in blocks:
        # Nothing in a block may be markup: "<!--", "<script" and "</script" switch the tokenizer's state.
        assert "<" not in text and ">" not in text and "&" not in text, (ident, text[:200])
        found |= {n for n in names if n in json.dumps(json.loads(text), ensure_ascii=False)}
    assert found == set(names)
    # The page's own script follows the data blocks and still opens and closes once.
    assert html.count("<script>") == 1
