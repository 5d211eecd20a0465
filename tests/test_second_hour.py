"""Issue 32, the second hour of a user: each friction of the trial reproduced through the CLI as a
user types it (`main([...])`), on a zoo of the toy models (`tests/toy_models.py`) and a probe folder
of small images. Timings are measured in `benchmarks/`, never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelspace.cli import main

ZOO = """
[[model]]
name = "cnn_a"
source = "python:toy_models:tiny_cnn"
task = "a"
input_size = 16

[[model]]
name = "cnn_b"
source = "python:toy_models:tiny_cnn"
kwargs = { width = 6 }
task = "b"
input_size = 16

[[model]]
name = "resnet_c"
source = "python:toy_models:tiny_resnet"
task = "c"
input_size = 16
"""


def write_images(folder: Path, n: int = 24, size: int = 16, seed: int = 0) -> Path:
    """``n`` random RGB images of ``size``² as PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def user(tmp_path, monkeypatch) -> dict:
    """A user's working folder: ``zoo.toml`` (three toy models at 16 px), ``probe/`` (24 images); the
    commands run in that folder, so the default ``modelspace-out/`` lands there too."""
    monkeypatch.chdir(tmp_path)
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(ZOO, encoding="utf-8")
    return {"dir": tmp_path, "zoo": zoo, "probe": write_images(tmp_path / "probe")}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``modelspace ARGV`` as typed: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ 1. a rerun with nothing new


# ------------------------------------------------------------------ 2. peak memory


# ------------------------------------------------------------------ 3. label scores on the page


# ------------------------------------------------------------------ 4. a typo in a model name


FAST = ("--no-report", "--methods", "saliency")  # what these tests need of a run: its models loaded or not


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The names of the models a run loads, in order (`load_model` as the space calls it)."""
    import modelspace.space

    names: list[str] = []
    real = modelspace.space.load_model

    def counted(spec, *args, **kwargs):
        names.append(spec.name)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(modelspace.space, "load_model", counted)
    return names


def test_a_typo_in_a_model_name_fails_before_any_model_loads(user, capsys, loads):
    zoo = user["zoo"]
    zoo.write_text(ZOO.replace('"python:toy_models:tiny_resnet"', '"python:toy_models:tiny_cn"'), encoding="utf-8")
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 2
    assert loads == []
    assert not (user["dir"] / "modelspace-out").exists()  # not even the store was made
    assert "zoo.toml: model 'resnet_c' (#3): field 'source'" in err
    assert "'tiny_cn'" in err and "did you mean 'tiny_cnn'" in err
    assert out == ""


def test_every_bad_entry_is_named_at_once(user, capsys, loads):
    (user["dir"] / "weights").mkdir()
    (user["dir"] / "weights" / "cnn.pt").write_bytes(b"")
    user["zoo"].write_text(ZOO.replace('"python:toy_models:tiny_resnet"', '"python:toy_modles:tiny_resnet"') + """
[[model]]
name = "from_file"
source = "checkpoint:weights/cnn.pth"
constructor = "python:toy_models:tiny_cnn"
""", encoding="utf-8")
    code, _, err = run(capsys, "embed", "zoo.toml", "probe", "--methods", "saliency")
    assert code == 2 and loads == []
    assert "2 zoo entries name models that do not exist" in err
    assert "model 'resnet_c' (#3)" in err and "did you mean 'toy_models'" in err
    assert "model 'from_file' (#4)" in err and "did you mean 'cnn.pt'" in err


def test_the_python_api_resolves_names_before_any_work(user, loads):
    from modelspace.errors import InputError
    from modelspace.models import ModelSpec, load_zoo
    from modelspace.space import ModelSpace

    specs = load_zoo(user["zoo"]) + [ModelSpec("typo", "python:toy_models:tiny_resnt")]
    with pytest.raises(InputError, match=r"model 'typo': field 'source'.*did you mean 'tiny_resnet'"):
        ModelSpace(methods=["saliency"], store=user["dir"] / "store", progress=False).fit(specs, user["probe"])
    assert loads == []


def test_a_model_that_cannot_load_is_skipped_on_the_rerun_until_retried_or_edited(user, capsys, loads):
    zoo = user["zoo"]
    zoo.write_text(ZOO.replace("kwargs = { width = 6 }", "kwargs = { widht = 6 }"), encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)  # the constructor refuses the keyword
    assert code == 1 and "cnn_b" in loads
    assert "TypeError" in err and "widht" in err

    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1
    assert loads == ["cnn_a", "resnet_c"]  # cnn_b is not loaded again
    assert "skipped, failed before:" in err and "widht" in err and "--retry-failed" in err

    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST, "--retry-failed")
    assert code == 1 and "cnn_b" in loads and "skipped" not in err  # tried again, failed again: recorded again
    loads.clear()
    assert run(capsys, "run", "zoo.toml", "probe", *FAST)[0] == 1 and "cnn_b" not in loads

    zoo.write_text(ZOO, encoding="utf-8")  # the entry edited: another spec, loaded again
    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 0 and "cnn_b" in loads and "skipped" not in err


def test_a_transient_load_failure_is_tried_again(user, capsys, loads):
    (user["dir"] / "flaky.py").write_text("def build():\n    raise MemoryError('out of memory while building')\n")
    user["zoo"].write_text(ZOO + '\n[[model]]\nname = "flaky"\nsource = "python:flaky:build"\ninput_size = 16\n',
                           encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "out of memory while building" in err
    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "flaky" in loads and "skipped" not in err


# ------------------------------------------------------------------ 5. offline hub


HUB_MODEL = "modelspace-tests/never-cached"


@pytest.fixture
def hub_source():
    """``hubtest:REPO``, a source that downloads its weights through the Hugging Face hub client, as timm
    does (with its retries), and declares the download; a zoo of one such model without a local copy."""
    pytest.importorskip("huggingface_hub")
    from modelspace.errors import MissingWeightsError
    from modelspace.models import SOURCES, register_source
    from modelspace.models.spec import SOURCE_DOWNLOADS
    from toy_models import tiny_cnn

    def load(spec, ref):
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(ref, "model.safetensors")
        except Exception as exc:
            raise MissingWeightsError(f"pretrained weights for {ref!r} could not be loaded; offline, they must "
                                      "already be in the Hugging Face cache") from exc
        return tiny_cnn(), "encoder"

    register_source("hubtest", downloads=lambda spec, ref: [f"https://huggingface.co/{ref}"])(load)
    yield ZOO + f'\n[[model]]\nname = "hubbed"\nsource = "hubtest:{HUB_MODEL}"\ninput_size = 16\n'
    del SOURCES["hubtest"]
    SOURCE_DOWNLOADS.pop("hubtest", None)


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection attempted, each refused as if no network were reachable."""
    import socket

    attempts: list[tuple] = []

    def unreachable(address, *args, **kwargs):
        attempts.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    return attempts


def test_offline_a_missing_download_fails_at_once(user, capsys, hub_source, connections, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as read from the variable on import
    user["zoo"].write_text(hub_source, encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1
    assert f"model 'hubbed' (source 'hubtest:{HUB_MODEL}'): pretrained weights for {HUB_MODEL!r} could not" in err
    assert connections == [("huggingface.co", 443)]  # the one probe: the hub client never tried
    assert "no network: huggingface.co:443 cannot be reached" in err
    assert "Retrying" not in err
    assert not huggingface_hub.constants.HF_HUB_OFFLINE  # offline for the run only

    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "skipped" not in err  # missing weights are fetched, not edited: not remembered


def test_with_the_hub_offline_nothing_is_probed(user, capsys, hub_source, connections, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    user["zoo"].write_text(hub_source, encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "pretrained weights for" in err
    assert connections == []


def test_no_probe_when_no_model_downloads(user, capsys, connections):
    assert run(capsys, "run", "zoo.toml", "probe", *FAST)[0] == 0
    assert connections == []


# ------------------------------------------------------------------ 6. a results folder that holds results


# ------------------------------------------------------------------ 7. the probe folder


# ------------------------------------------------------------------ 8. one set of defaults


def test_item8_the_api_computes_what_the_cli_computes_by_default(user, capsys) -> None:
    from modelspace import ModelSpace, load_zoo

    code, out, err = run(capsys, "run", "zoo.toml", "probe/", "--quiet")
    assert code == 0, err
    cli = json.loads(Path("modelspace-out/results.json").read_text())
    space = ModelSpace(store="api-store", progress=False).fit(load_zoo("zoo.toml"), "probe/")
    api = space.summary()
    assert api["methods"] == cli["methods"] and api["baselines"] == cli["baselines"]
    assert any(b.startswith("dds(") for b in api["baselines"])  # the default estimator, in both
    assert list(space.results_) == [*cli["methods"], *cli["baselines"]]


def test_item8_the_api_lowers_n_relevant_as_the_cli_does(user, caplog) -> None:
    from modelspace import ModelSpace, load_zoo

    truth = user["dir"] / "truth.csv"
    truth.write_text("target,rank1,rank2\na,b,c\nb,a,c\nc,a,b\n")
    space = ModelSpace(methods=["saliency"], baselines=(), progress=False).fit(load_zoo("zoo.toml"), "probe/")
    evaluation = space.evaluate(truth)  # 2 candidate sources per target: the default 5 is lowered to 2
    assert evaluation.n_relevant == 2 and "ranks only 2 candidate sources" in caplog.text
    assert "P@1" in str(evaluation) and "saliency" in str(evaluation)  # print(evaluation) is its table


def test_item8_the_readmes_set_up_commands_are_what_ci_runs() -> None:
    from docs_examples import blocks

    repo = Path(__file__).resolve().parents[1]
    quick = [b.text.strip() for b in blocks(repo / "README.md") if b.section == "Quick start" and b.language == "sh"]
    assert len(quick) == 2 and "modelspace demo" in quick[0] and "pytest" in quick[1]
    ci = (repo / ".ci" / "run").read_text().splitlines()
    for command in quick:
        assert command in ci, command


# ------------------------------------------------------------------ 9. the report


# ------------------------------------------------------------------ 10. the vision install


# ------------------------------------------------------------------ 11. timing claims
