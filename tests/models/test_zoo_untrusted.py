"""Untrusted checkpoints and zoo files, malformed zoo files.

The malicious files are real: a checkpoint whose pickle would write a marker file when loaded, a YAML
file whose tag would run a shell command. Neither runs by default; the checkpoint runs when the user
says it is trusted (which shows the payload is live, so the default test could fail)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from modelspace import ModelSpace, ModelSpec, ProbeSet
from modelspace.cli import main
from modelspace.errors import ModelLoadError, ZooError
from modelspace.models import load_model, load_zoo
from modelspace.models.spec import MAX_KWARGS_DEPTH, MAX_KWARGS_VALUES

import toy_models


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``. Any code could stand in its place."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / "weights" / "evil.pt"
    path.parent.mkdir()
    torch.save({"state_dict": toy_models.tiny_cnn().state_dict(), "note": Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_malicious_checkpoint_is_refused_by_default_and_names_file_and_flag(evil_checkpoint):
    path, marker = evil_checkpoint
    spec = ModelSpec("evil", f"checkpoint:{path}", constructor="python:toy_models:tiny_cnn", input_size=16)
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    message = str(info.value)
    assert str(path) in message and "'evil'" in message
    assert "trust_checkpoint = true" in message and "--trust-checkpoints" in message
    assert not marker.exists()


def test_trusted_checkpoint_does_run_its_pickle(evil_checkpoint):
    """The other side of the flag: trusting the file unpickles it in full (the marker appears)."""
    path, marker = evil_checkpoint
    spec = ModelSpec("evil", f"checkpoint:{path}", constructor="python:toy_models:tiny_cnn", input_size=16,
                     trust_checkpoint=True)
    load_model(spec)
    assert marker.read_text() == "unpickled"


def test_cli_refuses_the_malicious_checkpoint_unless_trusted(evil_checkpoint, tmp_path):
    path, marker = evil_checkpoint
    zoo = path.parent.parent / "zoo.toml"
    zoo.write_text('[[model]]\nname = "good"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n\n'
                   '[[model]]\nname = "evil"\nsource = "checkpoint:weights/evil.pt"\n'
                   'constructor = "python:toy_models:tiny_cnn"\ninput_size = 16\n')
    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)).save(probe)
    common = ["embed", str(zoo), str(probe), "--store", str(tmp_path / "store"), "--methods", "saliency", "--json",
              "--quiet"]
    assert main(common) == 1  # "evil" refused: a failed model, exit 1 (the exit codes' promise)
    assert not marker.exists()
    assert main([*common, "--trust-checkpoints"]) == 0
    assert marker.exists()


def test_pickle_refusal_is_recorded_per_model_in_a_run(evil_checkpoint):
    path, marker = evil_checkpoint
    specs = [ModelSpec("good", "python:toy_models:tiny_cnn", input_size=16),
             ModelSpec("evil", f"checkpoint:{path}", constructor="python:toy_models:tiny_cnn", input_size=16)]
    probe = ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32))
    space = ModelSpace(methods=["saliency"], progress=False).embed(specs, probe)
    assert [f.model for f in space.failures_] == ["evil"] and "trust_checkpoint" in space.failures_[0].message
    assert not marker.exists()


@pytest.mark.parametrize("tag", [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    '!!python/name:os.system',
])
def test_yaml_object_tags_are_refused_and_never_run(tmp_path, tag):
    marker = tmp_path / "MARKER"
    path = tmp_path / "zoo.yaml"
    path.write_text(f"models:\n  - name: evil\n    source: {tag.format(marker=marker)}\n")
    with pytest.raises(ZooError, match="not valid YAML") as info:
        load_zoo(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    # The unsafe loader really would have run it: the file is a live payload.
    if "apply" in tag:
        yaml.unsafe_load(path.read_text())
        assert marker.exists()


# --------------------------------------------------------------------------- zoo paths

def test_relative_paths_cannot_climb_out_of_the_zoo_folder(tmp_path):
    zoos = tmp_path / "zoos"
    zoos.mkdir()
    entry = '[[model]]\nname = "m"\nsource = "{source}"\nconstructor = "python:toy_models:tiny_cnn"\n'
    for source in ("checkpoint:../secret/weights.pt", "checkpoint:sub/../../weights.pt", "torchscript:../x.pt",
                   "hf:../some_model"):
        path = zoos / "zoo.toml"
        path.write_text(entry.format(source=source).replace('constructor = "python:toy_models:tiny_cnn"\n', "")
                        if not source.startswith("checkpoint") else entry.format(source=source))
        with pytest.raises(ZooError, match="outside the zoo file's folder") as info:
            load_zoo(path)
        assert "model 'm'" in str(info.value) and "'source'" in str(info.value) and str(path) in str(info.value)
    # Inside the folder (even through '..' that stays inside) and absolute paths are fine.
    path.write_text(entry.format(source="checkpoint:sub/../weights/a.pt")
                    + entry.format(source=f"checkpoint:{tmp_path / 'elsewhere' / 'b.pt'}").replace('"m"', '"n"'))
    inside, absolute = load_zoo(path)
    assert inside.source == f"checkpoint:{zoos / 'weights' / 'a.pt'}"
    assert absolute.source == f"checkpoint:{tmp_path / 'elsewhere' / 'b.pt'}"


# --------------------------------------------------------------------------- malformed zoo files

BASE = {"name": "m", "source": "python:toy_models:tiny_cnn"}

# (override, the field the error must name); None deletes the field.
MALFORMED = [
    ({"name": None}, "name"), ({"name": 7}, "name"), ({"name": ""}, "name"), ({"name": ["m"]}, "name"),
    ({"source": None}, "source"), ({"source": 3}, "source"), ({"source": ""}, "source"),
    ({"source": "ftp:model"}, "source"), ({"source": "python:"}, "source"), ({"source": "python:mod"}, "source"),
    ({"task": 5}, "task"), ({"task": ""}, "task"), ({"task": ["a"]}, "task"),
    ({"encoder": 5}, "encoder"), ({"encoder": ["layer4"]}, "encoder"),
    ({"input_size": "big"}, "input_size"), ({"input_size": 0}, "input_size"), ({"input_size": -2}, "input_size"),
    ({"input_size": [1, 2, 3]}, "input_size"), ({"input_size": True}, "input_size"), ({"input_size": 2.5}, "input_size"),
    ({"mean": "gray", "std": [1, 1, 1]}, "mean"), ({"mean": [0, 0], "std": [1, 1, 1]}, "mean"),
    ({"mean": [0, 0, 0]}, "std"), ({"std": [1, 1, 1]}, "mean"), ({"mean": [0, 0, 0], "std": [1, 0, 1]}, "std"),
    ({"mean": [0, 0, 0], "std": "one"}, "std"), ({"mean": [0, "a", 0], "std": [1, 1, 1]}, "mean"),
    ({"normalize": 3}, "normalize"), ({"normalize": "zscore"}, "normalize"),
    ({"normalize": "half", "mean": [0, 0, 0], "std": [1, 1, 1]}, "normalize"),
    ({"source": "checkpoint:w.pt"}, "constructor"), ({"source": "checkpoint:w.pt", "constructor": 3}, "constructor"),
    ({"source": "checkpoint:w.pt", "constructor": "os:system"}, "constructor"),
    ({"constructor": "python:toy_models:tiny_cnn"}, "constructor"),
    ({"kwargs": 3}, "kwargs"), ({"kwargs": "width=4"}, "kwargs"), ({"kwargs": {"1bad": 1}}, "kwargs"),
    ({"pretrained": "yes"}, "pretrained"), ({"pretrained": 1}, "pretrained"),
    ({"trust_checkpoint": "yes"}, "trust_checkpoint"), ({"trust_checkpoint": 0}, "trust_checkpoint"),
    ({"encodr": "layer4"}, "encodr"),
]


def toml_value(v) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + " }"
    return json.dumps(v)


def write_zoo(tmp_path: Path, fmt: str, entry: dict) -> Path:
    good = {"name": "ok", "source": "python:toy_models:tiny_cnn"}
    if fmt == "yaml":
        path = tmp_path / "zoo.yaml"
        path.write_text(yaml.safe_dump({"models": [good, entry]}, sort_keys=False))
    else:
        path = tmp_path / "zoo.toml"
        path.write_text("".join("[[model]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items()) + "\n"
                                for e in (good, entry)))
    return path


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
@pytest.mark.parametrize("override, field", MALFORMED, ids=[f"{f}-{i}" for i, (_, f) in enumerate(MALFORMED)])
def test_every_missing_or_wrong_field_names_file_model_and_field(tmp_path, fmt, override, field):
    entry = {k: v for k, v in {**BASE, **override}.items() if v is not None}
    path = write_zoo(tmp_path, fmt, entry)
    with pytest.raises(ZooError) as info:
        load_zoo(path)
    message = str(info.value)
    assert str(path) in message, message
    assert f"field '{field}'" in message, message
    named = isinstance(entry.get("name"), str) and entry["name"]
    assert ("model 'm'" if named else "model #2") in message, message


def test_an_entry_that_is_not_a_table_names_its_position(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text("models:\n  - name: ok\n    source: python:toy_models:tiny_cnn\n  - just a string\n")
    with pytest.raises(ZooError, match=r"model #2: expected a table") as info:
        load_zoo(path)
    assert str(path) in str(info.value)


def alias_bomb(depth: int = 9) -> str:
    """A YAML zoo whose kwargs are a 'billion laughs': each level lists the previous one nine times."""
    lines = ["models:", "  - name: bomb", "    source: python:toy_models:tiny_cnn", "    kwargs:",
             '      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth):
        lines.append(f"      l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_in_kwargs_is_refused_before_it_expands(tmp_path):
    """A 629-byte zoo file whose kwargs nest aliases nine deep (9^9 strings once
    expanded) ran for over 90 s in `_freeze` / `to_json`. It is refused, naming file, model and field,
    after counting at most MAX_KWARGS_VALUES values."""
    text = alias_bomb()
    assert len(text) < 700
    path = tmp_path / "zoo.yaml"
    path.write_text(text)

    def on_alarm(*_):
        raise TimeoutError("the alias bomb was expanded")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(60)  # a hang becomes a failure, not a stuck test run
    try:
        with pytest.raises(ZooError) as err:
            load_zoo(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = str(err.value)
    assert str(path) in message and "model 'bomb'" in message and "field 'kwargs'" in message
    assert f"more than {MAX_KWARGS_VALUES} values" in message
    # Deep nesting without aliases is refused too; small kwargs with aliases still load.
    deep = "x"
    for _ in range(MAX_KWARGS_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ZooError, match="nested more than"):
        ModelSpec(name="deep", source="python:toy_models:tiny_cnn", kwargs={"v": deep})
    path.write_text(alias_bomb(depth=3))
    [spec] = load_zoo(path)
    assert len(spec.kwargs_dict()["l2"]) == 9 and spec.kwargs_dict()["l2"][0][0] == ["lol"] * 9
