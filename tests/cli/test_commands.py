"""The commands as a user runs them, and progress in logs: each trial run as a user runs it (`main([...])` or a
subprocess) on a tiny zoo of `python:` models kept beside the zoo file, reproducing what went wrong."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.runs import run, subprocess_env
from support.zoos import NETS, zoo_text
from support.paths import REPO
from modelspace.cli import main
from modelspace.models import load_model, load_zoo
from modelspace.progress import LineProgress, progress
from modelspace.space import ModelSpace

README = REPO / "README.md"
INSTALL = REPO / "docs" / "getting-started" / "install.md"

def import_path() -> list[str]:
    """A copy of the interpreter's module search path, only read (test_layout forbids editing it)."""
    return list(vars(sys)["path"])


# ------------------------------------------------------------------------- 1. python: beside the zoo


def test_python_source_beside_the_zoo_file_is_imported(trial, capsys) -> None:
    path_before = import_path()
    code, out, err = run(capsys, "embed", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--methods",
                         "saliency")
    assert code == 0, err  # it failed with "cannot import module 'mynets'"
    assert "maps of 3 models in s; 0 failures; 3 units computed" in out
    assert import_path() == path_before  # the zoo's folder was importable only while its models were built


def test_two_zoos_with_their_own_module_of_one_name(tmp_path, monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    widths = {}
    for extra in (0, 3):  # the same module name in two folders, two different classes
        folder = tmp_path / f"zoo{extra}"
        folder.mkdir()
        (folder / "mynets.py").write_text(NETS.format(extra=extra))
        (folder / "zoo.toml").write_text(zoo_text())
        loaded = load_model(load_zoo(folder / "zoo.toml")[0])
        widths[extra] = loaded.module.encoder[0].out_channels
        assert sys.modules["mynets"].__file__ == str(folder / "mynets.py")
        assert str(folder) not in import_path()
    assert widths == {0: 4, 3: 7}
    sys.modules.pop("mynets", None)


def test_a_module_missing_everywhere_names_the_zoo_folder(trial, capsys) -> None:
    trial["zoo"].write_text(zoo_text().replace("mynets", "nowhere_such_module"))
    code, _, err = run(capsys, "embed", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--methods",
                       "saliency")
    assert code == 2  # bad input, found before any model loads
    assert "cannot import module 'nowhere_such_module'" in err and f"zoo file's folder {trial['dir']}" in err


# ------------------------------------------------------------------------- 2. the default store


def test_embed_without_store_keeps_its_work_in_runs_default_store(trial, capsys) -> None:
    code, out, err = run(capsys, "embed", str(trial["zoo"]), str(trial["probe"]), "--methods", "saliency")
    assert code == 0, err
    assert "maps of 3 models in modelspace-out/store; 0 failures; 3 units computed" in out  # was "in None"
    assert "maps are stored in modelspace-out/store" in err
    assert (trial["work"] / "modelspace-out" / "store" / "manifest.sqlite").is_file()
    code, out, _ = run(capsys, "models")  # the store commands default to it too
    assert code == 0 and len(out.splitlines()) == 3
    # `affinity` without --store reads the same store (nothing computed again), as `run` would.
    code, out, err = run(capsys, "affinity", str(trial["zoo"]), str(trial["probe"]), "--methods", "saliency", "--json")
    assert code == 0, err
    # embed keeps what run needs: the default estimator's (DDS's) forms of the activations too
    assert json.loads(out)["work"] == {"computed": 0, "reused": 3, "activations_computed": 0, "activations_reused": 3}
    code, out, err = run(capsys, "run", str(trial["zoo"]), str(trial["probe"]), "--methods", "saliency", "--json",
                         "--no-report")
    assert code == 0 and json.loads(out)["work"]["computed"] == 0 and json.loads(out)["work"]["reused"] == 3


# ------------------------------------------------------------------------- 3. a mistyped store


@pytest.mark.parametrize("argv", [["models"], ["remove", "tiny"], ["gc", "--keep-zoo", "{zoo}"]],
                         ids=["models", "remove", "gc"])
def test_read_only_commands_refuse_a_missing_store(trial, capsys, argv) -> None:
    argv = [a.format(zoo=trial["zoo"]) for a in argv]
    code, out, err = run(capsys, *argv, "--store", "nosuchstore")
    assert code == 2 and out == ""  # it printed "(no models)", exit 0
    assert "store 'nosuchstore' does not exist" in err
    assert not (trial["work"] / "nosuchstore").exists()  # and had created the folder
    (trial["work"] / "notastore").mkdir()
    code, _, err = run(capsys, *argv, "--store", "notastore")
    assert code == 2 and "'notastore' is not a map store" in err


# ------------------------------------------------------------------------- 4. stale entries, remove, gc


@pytest.mark.slow
def test_remove_refuses_an_ambiguous_name_and_gc_removes_stale_keys(trial, capsys) -> None:
    embed = ["embed", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--methods", "saliency", "--quiet"]
    assert main(embed) == 0
    trial["zoo"].write_text(zoo_text("width = 5"))  # tiny's kwargs change: a new key under the same name
    assert main(embed) == 0
    code, out, _ = run(capsys, "models", "--store", "s")
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == ["tiny", "tiny", "tiny2", "tiny3"]
    keys = [m["model_key"] for m in json.loads(run(capsys, "models", "--store", "s", "--json")[1])
            if m["name"] == "tiny"]

    code, out, err = run(capsys, "remove", "tiny", "--store", "s")
    assert code == 2 and out == ""  # it deleted one of the two silently
    assert "'tiny' names 2 models in store s; nothing removed" in err
    assert all(key in err for key in keys) and '"width": 5' in err and "first stored 20" in err
    assert len(json.loads(run(capsys, "models", "--store", "s", "--json")[1])) == 4

    gc = ["gc", "--keep-zoo", str(trial["zoo"]), "--store", "s"]
    code, out, err = run(capsys, *gc, "--dry-run")
    assert code == 0, err
    assert f"would remove tiny {keys[0][:12]} (1 shard)" in out and "would remove 1 model, kept 3 of 4" in out
    assert len(json.loads(run(capsys, "models", "--store", "s", "--json")[1])) == 4
    code, out, err = run(capsys, *gc)
    assert code == 0 and f"removed tiny {keys[0][:12]} (1 shard)" in out
    assert [m["model_key"] for m in json.loads(run(capsys, "models", "--store", "s", "--json")[1])
            if m["name"] == "tiny"] == [keys[1]]
    assert "every model of the zoo is loaded" in subprocess.run(
        [sys.executable, "-m", "modelspace.cli", "gc", "--help"], capture_output=True, text=True,
        env=subprocess_env()).stdout.lower().replace("\n", " ").replace("  ", " ")

    # By a unique key prefix; an unknown name or key is a message.
    code, out, _ = run(capsys, "remove", keys[1][:8], "--store", "s")
    assert code == 0 and out.startswith(f"removed tiny {keys[1][:12]} (1 shard)")
    code, _, err = run(capsys, "remove", "tiny", "--store", "s")
    assert code == 2 and "no model named or keyed 'tiny' in store s" in err


# ------------------------------------------------------------------------- 5. evaluate on a small truth


@pytest.fixture
def affinity_csv(trial, capsys) -> Path:
    assert main(["affinity", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--out", "res", "--methods",
                 "saliency", "--quiet"]) == 0
    return trial["work"] / "res" / "affinity_saliency.csv"


def test_evaluate_lowers_the_default_n_relevant_and_never_prints_nan(affinity_csv, tmp_path, capsys) -> None:
    truth = tmp_path / "rank.csv"
    truth.write_text("target,rank1,rank2\ntiny,tiny2,tiny3\ntiny2,tiny,tiny3\ntiny3,tiny,tiny2\n")
    code, out, err = run(capsys, "evaluate", str(affinity_csv), "--truth", str(truth), "--out", "ev")
    assert code == 0, err  # it failed: "n_relevant: 5 exceeds n_candidates 2"
    assert "ranks only 2 candidate sources among these models: each target's top 2 count as relevant" in err
    assert "nan" not in out and out.splitlines()[1].split()[2:5] == ["–", "–", "–"]
    code, out, err = run(capsys, "evaluate", str(affinity_csv), "--truth", str(truth), "--out", "ev",
                         "--n-relevant", "2")
    assert code == 0 and "nan" not in out  # P@3, P@5, R@5 were nan
    code, out, err = run(capsys, "evaluate", str(affinity_csv), "--truth", str(truth), "--out", "ev",
                         "--n-relevant", "3")
    assert code == 2 and "n_relevant 3 exceeds the 2 candidate source(s)" in err and "--n-relevant" in err


@pytest.mark.parametrize("header", ["target,source,score\n", ""], ids=["with header", "without header"])
def test_evaluate_reads_a_long_truth(affinity_csv, tmp_path, capsys, header) -> None:
    long = tmp_path / "long.csv"
    long.write_text(header + "tiny,tiny2,0.9\ntiny,tiny3,0.1\ntiny2,tiny,0.5\ntiny2,tiny3,0.7\n"
                             "tiny3,tiny,0.2\ntiny3,tiny2,0.2\n")
    matrix = tmp_path / "matrix.csv"  # the same truth as a matrix: the two must evaluate alike
    matrix.write_text("target\\source,tiny,tiny2,tiny3\ntiny,,0.9,0.1\ntiny2,0.5,,0.7\ntiny3,0.2,0.2,\n")
    outs = []
    for truth in (long, matrix):
        code, out, err = run(capsys, "evaluate", str(affinity_csv), "--truth", str(truth), "--out", "ev",
                             "--n-relevant", "1", "--json")
        assert code == 0, err  # the long file was misread ("not a number: 'tiny2'")
        outs.append(json.loads(out))
    assert outs[0]["methods"] == outs[1]["methods"]
    # higher score = better; the tie of tiny3's sources (0.2, 0.2) is broken by source name
    assert outs[0]["per_target"]["saliency"]["tiny3"]["relevant"] == ["tiny"]
    assert outs[0]["per_target"]["saliency"]["tiny"]["relevant"] == ["tiny2"]


# ------------------------------------------------------------------------- 6. the Python API


def test_results_and_rankings_take_the_names_maps_takes(trial) -> None:
    space = ModelSpace(methods=["saliency", "lrp"], store=trial["work"] / "s", progress=False)
    space.fit(load_zoo(trial["zoo"]), str(trial["probe"]))  # a folder, as the CLI takes it ("dtype <U6")
    assert space.probe_.size == 16 and len(space.probe_) == 6
    lrp = space.results_["lrp_epsilon(epsilon=1e-06)"]
    assert space.results_["lrp"] is lrp and space.results_["lrp_epsilon"] is lrp  # were KeyErrors
    assert set(space.maps("lrp")) == set(lrp.names)
    with pytest.raises(KeyError, match=r"'rgb2depth' is not one of the target model names: 'tiny', 'tiny2', "
                                       r"'tiny3' \(rankings are keyed by model name"):
        lrp.ranking["rgb2depth"]
    with pytest.raises(KeyError, match=r"'gradient' is not one of the estimator ids: 'saliency', 'lrp_epsilon"):
        space.results_["gradient"]
    assert space.results_.get("nothing") is None
    assert "lrp" in space.results_ and "nothing" not in space.results_ and space.results_.get("lrp") is lrp


# ------------------------------------------------------------------------- 7. flags and plurals


@pytest.mark.slow
def test_canonical_flags_old_spellings_and_plurals(trial, capsys, tmp_path) -> None:
    for flag in ("--probe-size", "--size"):  # `probe --size` is the old spelling
        code, out, err = run(capsys, "probe", str(trial["probe"]), flag, "8", "--out", f"p{flag}.npz", "--json")
        assert code == 0, err
        assert json.loads(out)["size"] == 8
    probe_help = subprocess.run([sys.executable, "-m", "modelspace.cli", "probe", "--help"], capture_output=True,
                                text=True, env=subprocess_env()).stdout
    assert "--probe-size" in probe_help and "--size" not in probe_help  # hidden alias

    one = trial["dir"] / "one.toml"
    one.write_text(zoo_text().split("\n\n")[0] + "\n")
    code, out, err = run(capsys, "run", str(one), str(trial["probe"]), "--methods", "saliency", "--out", "res")
    assert code == 0, err
    assert "saliency: 1 model\n" in out and "1 models" not in out  # was "1 models"
    code, out, err = run(capsys, "embed", str(one), str(trial["probe"]), "--methods", "saliency", "--store", "e")
    assert "maps of 1 model in e; 0 failures; 1 unit computed" in out

    for flag in ("--out", "--output"):  # `report --output` is the old spelling
        code, out, err = run(capsys, "report", "res", flag, f"page{flag}.html", "--quiet")
        assert code == 0, err
        assert (trial["work"] / f"page{flag}.html").is_file()
    report_help = subprocess.run([sys.executable, "-m", "modelspace.cli", "report", "--help"], capture_output=True,
                                 text=True, env=subprocess_env()).stdout
    assert "--out" in report_help and "--output" not in report_help

    from modelspace.cli import _parser

    defaults = {cmd: _parser().parse_args([cmd, *extra]).out for cmd, extra in
                [("run", ["z", "p"]), ("affinity", ["z", "p"]), ("tree", ["a"]), ("evaluate", ["a"]), ("demo", []),
                 ("study", [])]}
    assert defaults == {"run": "modelspace-out", "affinity": "modelspace-out", "tree": "modelspace-out",
                        "evaluate": "modelspace-out", "demo": "modelspace-out/demo", "study": "modelspace-out/study"}


# ------------------------------------------------------------------------- 8. docs vs pyproject


@pytest.mark.parametrize("page", [README, INSTALL], ids=["README", "install"])
def test_the_python_version_stated_is_the_one_pyproject_requires(page) -> None:
    required = re.search(r'requires-python\s*=\s*">=\s*([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    stated = re.findall(r"Python ≥ ([\d.]+)", page.read_text(encoding="utf-8"))
    assert stated and set(stated) == {required}


# ------------------------------------------------------------------------- progress in logs


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_in_a_log() -> None:
    log = io.StringIO()
    bar = progress(range(5), desc="m · saliency", unit="shard", file=log)
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert re.fullmatch(r"modelspace: m · saliency: 5 shards in \d+\.\d s \(.+ shards/s\)\n", log.getvalue())
    tty = _Tty()
    assert not isinstance(progress(range(2), file=tty), LineProgress)
    quiet = io.StringIO()
    for _ in progress(range(3), file=quiet, disable=True):
        pass
    with progress(total=4, desc="nothing to do", unit="shard", file=quiet) as idle:
        idle.update(0)
    assert quiet.getvalue() == ""  # disabled, or no work done: no line


def test_progress_of_a_cli_run_in_a_log_is_one_line_per_model_and_method(trial, capsys) -> None:
    code, _, err = run(capsys, "embed", str(trial["zoo"]), str(trial["probe"]), "--store", "s")
    assert code == 0, err
    assert "\r" not in err  # no bar redraws (stderr is captured: not a TTY)
    lines = [line for line in err.splitlines() if " shard" in line]
    assert [line.split(":")[1].strip() for line in lines] == [
        f"{m} · {g}" for m in ("tiny", "tiny2", "tiny3") for g in ("saliency+gradient_x_input", "lrp_epsilon")]
    assert all(re.search(r": 1 shard in \d+\.\d s \(.+ shards/s\)$", line) for line in lines)


def test_the_store_manifest_of_a_gc_dry_run_is_untouched(trial, capsys) -> None:
    assert main(["embed", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--methods", "saliency",
                 "--quiet"]) == 0
    before = sqlite3.connect(trial["work"] / "s" / "manifest.sqlite").execute("SELECT COUNT(*) FROM shards").fetchone()
    trial["zoo"].write_text(zoo_text().split("\n\n")[0] + "\n")  # only tiny is kept
    code, out, _ = run(capsys, "gc", "--keep-zoo", str(trial["zoo"]), "--store", "s", "--dry-run")
    assert code == 0 and "would remove 2 models, kept 1 of 3 (dry run: nothing deleted)" in out
    after = sqlite3.connect(trial["work"] / "s" / "manifest.sqlite").execute("SELECT COUNT(*) FROM shards").fetchone()
    assert before == after == (3,)
