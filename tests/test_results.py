"""The output folder's mechanism (`modelspace.results`): hashes of older folders, files that
`modelspace tree` adds, the commit journal, stale staging folders, and which errors are the folder's.
The trials with real runs are in tests/test_results_folder.py."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelspace.cli import main
from modelspace.errors import InputError, StorageError
from modelspace.results import FILES, RUN_ID, SHA256, MethodResult, OutputFolder, load, save

NAMES = ["a", "b", "c"]


def saved(out: Path, seed: int = 0) -> Path:
    """A folder of one estimator over three models, as `save` writes it."""
    x = np.random.default_rng(seed).uniform(0, 1, (3, 3))
    affinity = (x + x.T) / 2
    np.fill_diagonal(affinity, 1)
    summary = {"methods": ["saliency"], "baselines": [], "probe": {"n_images": 4, "size": 16},
               "models": [{"name": n, "task": n} for n in NAMES]}
    return save(out, {"saliency": MethodResult("saliency", NAMES, NAMES, affinity)}, summary)


def record(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_every_file_but_results_json_is_hashed_and_each_run_has_its_id(tmp_path) -> None:
    out = saved(tmp_path / "out")
    first = record(out)
    assert set(first[SHA256]) == set(first[FILES]) - {"results.json"}
    assert record(saved(out, seed=1))[RUN_ID] != first[RUN_ID]


def test_a_folder_of_an_older_modelspace_without_hashes_still_loads_and_reports(tmp_path, capsys) -> None:
    out = saved(tmp_path / "out")
    older = record(out)
    del older[SHA256], older[RUN_ID]
    (out / "results.json").write_text(json.dumps(older))
    (out / "tree_saliency.nwk").write_text("(a,(b,c));\n")  # not checked: no hash to check it against
    assert load(out)[1]["saliency"].names == NAMES
    assert main(["report", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert "report.html" in record(out)[FILES]


def test_tree_into_a_run_s_folder_replaces_its_tree_files_and_adds_others_unlisted(tmp_path, capsys) -> None:
    out = saved(tmp_path / "out")
    before = record(out)
    assert main(["tree", str(out / "affinity_saliency.csv"), "--linkage", "single", "--out", str(out)]) == 0
    after = record(out)
    assert after[FILES] == before[FILES] and after[RUN_ID] == before[RUN_ID]
    assert after[SHA256]["dendrogram_saliency.png"] != before[SHA256]["dendrogram_saliency.png"]
    assert load(out)[1]["saliency"].names == NAMES  # the replaced files are the run's, with their hashes

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(out / "affinity_saliency.csv", other / "affinity_mine.csv")
    assert main(["tree", str(other / "affinity_mine.csv"), "--out", str(out)]) == 0
    assert (out / "tree_mine.nwk").is_file() and "tree_mine.nwk" not in record(out)[FILES]
    saved(out, seed=1)
    assert (out / "tree_mine.nwk").is_file()  # not the run's: a rerun leaves it


def test_a_journal_naming_a_file_outside_the_folder_is_refused(tmp_path) -> None:
    out = saved(tmp_path / "out")
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    commit = out / ".modelspace-commit"
    commit.mkdir()
    (commit / ".modelspace-journal.json").write_text(json.dumps({"move": [], "remove": ["../precious.txt"]}))
    with pytest.raises(StorageError, match="not a journal written by modelspace"):
        load(out)
    assert precious.read_text() == "mine"


def test_a_commit_stopped_before_its_journal_was_removed_is_cleared(tmp_path) -> None:
    out = saved(tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / ".modelspace-commit").mkdir()  # every file moved, the journal removed, the folder not yet
    assert load(out)[1]["saliency"].names == NAMES
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_stale_staging_folders_and_a_killed_writer_s_note_are_removed_by_the_next_run(tmp_path) -> None:
    out = saved(tmp_path / "out")
    (out / ".modelspace-staging-killed").mkdir()
    (out / ".modelspace-staging-killed" / "affinity_saliency.csv").write_text("half")
    (out / ".modelspace-writer.json").write_text('{"pid": 1, "host": "h", "since": 0}')
    saved(out, seed=1)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".modelspace-")]


def test_an_os_error_about_another_file_is_not_the_folder_s(tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        with OutputFolder(out):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "elsewhere.csv"))
    with pytest.raises(StorageError, match=f"{out / 'x.csv'}.*No space left on device"):
        with OutputFolder(out) as folder:
            folder.path("x.csv")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write raises: no file named
    assert list(out.iterdir()) == []


def test_modelspace_s_own_names_are_not_file_names_of_a_run(tmp_path) -> None:
    with OutputFolder(tmp_path / "out") as folder:
        for name in (".modelspace-commit", ".modelspace-journal.json", "results.json", "sub/x.csv"):
            with pytest.raises(InputError, match="not a file name of an output folder"):
                folder.path(name)
