"""Issue 14: runtime trials. Each test reproduces a trial of the issue: a model name that broke the
report's scripts, manifest paths outside the store, store errors reported as model failures, models
that end or poison a run, stdout that was not JSON, stale claims, and edited model code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from modelspace.cli import main
from modelspace.errors import StoreError
from modelspace.maps import EntryKey, MapStore, plan_units
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


# ---------------------------------------------------------------------- item 4: manifest paths
def edited_store(root: Path, how: str) -> tuple[Path, EntryKey, Path]:
    """A store with one model of 4 shards (2 images each) whose shard 1 row was edited to name
    ``outside`` (absolute, ``../`` relative, or through a symbolic link at the shard's place)."""
    outside = root / "precious.txt"
    outside.write_text("not the store's")
    store_root = root / "store"
    key = EntryKey(model_key="ab" * 8, probe_hash="cd" * 32, method="saliency", probe_size=4)
    maps = np.random.default_rng(0).uniform(0.1, 1, (8, 3, 4, 4)).astype(np.float32)
    with MapStore(store_root) as store:
        store.register_model(key.model_key, "victim", {"source": "test"})
        for unit in plan_units(key, "victim", 8, shard_size=2):
            store.write(unit, maps[unit.start:unit.stop])
        rel = store.shard_relpath(key, 1)
        if how == "symlink":
            (store_root / rel).unlink()
            (store_root / rel).symlink_to(outside)
            path = rel
        else:
            path = str(outside) if how == "absolute" else "../" * rel.count("/") + "../precious.txt"
        with store.db.transaction() as cur:
            cur.execute("UPDATE shards SET path = ? WHERE shard = 1", (path,))
    return store_root, key, outside


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_a_manifest_path_outside_the_store_is_never_deleted_or_read(tmp_path, how, caplog) -> None:
    """Trial: a shard row edited to an absolute path outside the store made `modelspace remove`
    delete that file; the cleanup of superseded shards in `write` had the same exposure."""
    store_root, key, outside = edited_store(tmp_path, how)
    with MapStore(store_root) as store:
        with pytest.raises(StoreError, match="outside the store"):
            store.read(key)
        assert [u.shard for u in store.missing(plan_units(key, "victim", 8, shard_size=2))] == [1]
        assert not store.is_complete(key, 8)
    assert main(["remove", "victim", "--store", str(store_root)]) == 0
    assert outside.read_text() == "not the store's"
    assert "precious.txt" in caplog.text and "outside the store" in caplog.text  # a warning names the file

    # write(): a shard of another size supersedes the edited row, whose file must survive.
    (tmp_path / "w").mkdir()
    store_root, key, outside = edited_store(tmp_path / "w", how)
    with MapStore(store_root) as store:
        unit = plan_units(key, "victim", 8, shard_size=8)[0]
        store.write(unit, np.ones((8, 3, 4, 4), np.float32))
        assert store.read(key).shape == (8, 48)
    assert outside.read_text() == "not the store's"
