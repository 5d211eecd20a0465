"""Zoo files (TOML and YAML) and ModelSpec validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from modelspace.errors import InputError, ZooError
from modelspace.models import InputTransform, ModelSpec, load_model, load_zoo, spec_from_dict

TOML_ZOO = """
[[model]]
name = "cnn"
source = "python:toy_models:tiny_cnn"
kwargs = { width = 4 }
input_size = 32
normalize = "half"

[[model]]
name = "resnet"
task = "classification"
source = "checkpoint:weights/resnet.pt"
constructor = "python:toy_models:tiny_resnet"
encoder = "layer2"
input_size = [48, 64]
mean = [0.1, 0.2, 0.3]
std = [0.4, 0.5, 0.6]

[[model]]
name = "scripted"
source = "torchscript:/abs/scripted.pt"
normalize = "none"
pretrained = false
"""

YAML_ZOO = """
models:
  - name: cnn
    source: "python:toy_models:tiny_cnn"
    kwargs: {width: 4}
    input_size: 32
    normalize: half
  - name: resnet
    task: classification
    source: "checkpoint:weights/resnet.pt"
    constructor: "python:toy_models:tiny_resnet"
    encoder: layer2
    input_size: [48, 64]
    mean: [0.1, 0.2, 0.3]
    std: [0.4, 0.5, 0.6]
  - name: scripted
    source: "torchscript:/abs/scripted.pt"
    normalize: none
    pretrained: false
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def toml_entry(**fields: str) -> str:
    """One [[model]] table; values are TOML literals."""
    return "[[model]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())


def test_toml_and_yaml_parse_to_equal_specs(tmp_path):
    from_toml = load_zoo(write(tmp_path, "zoo.toml", TOML_ZOO))
    from_yaml = load_zoo(write(tmp_path, "zoo.yaml", YAML_ZOO))
    assert from_toml == from_yaml
    assert [s.name for s in from_toml] == ["cnn", "resnet", "scripted"]


def test_parsed_values(tmp_path):
    cnn, resnet, scripted = load_zoo(write(tmp_path, "zoo.toml", TOML_ZOO))
    assert cnn.input_size == (32, 32)
    assert cnn.mean == (0.5, 0.5, 0.5) and cnn.std == (0.5, 0.5, 0.5)
    assert cnn.kwargs_dict() == {"width": 4}
    assert cnn.label == "cnn" and cnn.encoder is None
    assert resnet.label == "classification"
    assert resnet.input_size == (48, 64)
    assert resnet.mean == (0.1, 0.2, 0.3) and resnet.std == (0.4, 0.5, 0.6)
    assert scripted.mean == (0.0, 0.0, 0.0) and scripted.std == (1.0, 1.0, 1.0)
    assert scripted.pretrained is False and scripted.trust_checkpoint is False


def test_unset_preprocessing_is_left_to_the_model_then_imagenet_224():
    spec = ModelSpec("m", "python:toy_models:tiny_cnn")
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation) == (None, None, None, None)
    # a python: model says nothing about itself: the defaults, recorded as such
    loaded = load_model(spec)
    assert loaded.spec.input_size == (224, 224) and loaded.spec.interpolation == "bilinear"
    assert loaded.spec.mean == (0.485, 0.456, 0.406) and loaded.spec.std == (0.229, 0.224, 0.225)
    assert loaded.preprocessing["from"] == dict.fromkeys(("input_size", "mean", "std", "interpolation"), "default")
    assert loaded.transform == InputTransform((224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


def test_parsed_interpolation_and_its_errors():
    spec = spec_from_dict({"name": "m", "source": "timm:a", "interpolation": "bicubic"}, "inline")
    assert spec.interpolation == "bicubic" and spec.to_dict()["interpolation"] == "bicubic"
    with pytest.raises(ZooError, match=r"inline: model 'm': field 'interpolation': expected one of"):
        spec_from_dict({"name": "m", "source": "timm:a", "interpolation": "lanczos"}, "inline")
    with pytest.raises(ZooError, match=r"model 'm': field 'std': mean and std must be given together"):
        ModelSpec("m", "timm:a", mean=(0.5, 0.5, 0.5))


def test_relative_paths_resolve_against_zoo_folder(tmp_path, monkeypatch):
    sub = tmp_path / "zoos"
    (sub / "local_hf").mkdir(parents=True)
    text = (toml_entry(name='"a"', source='"checkpoint:weights/a.pt"', constructor='"python:toy_models:tiny_cnn"')
            + toml_entry(name='"b"', source='"torchscript:/abs/b.pt"')
            + toml_entry(name='"c"', source='"hf:local_hf"')
            + toml_entry(name='"d"', source='"hf:org/some-model"'))
    path = write(sub, "zoo.toml", text)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    a, b, c, d = load_zoo(Path("zoos") / "zoo.toml")
    assert a.source == f"checkpoint:{sub / 'weights' / 'a.pt'}"
    assert b.source == "torchscript:/abs/b.pt"
    assert c.source == f"hf:{sub / 'local_hf'}"
    assert d.source == "hf:org/some-model"  # no such folder: a hub id, kept as written
    assert path.exists()


def test_specs_are_hashable_and_kwargs_round_trip():
    spec = ModelSpec("m", "timm:resnet18", kwargs={"drop_rate": 0.1, "cfg": {"file": "w.bin"}, "ids": [1, 2]})
    assert spec.kwargs_dict() == {"drop_rate": 0.1, "cfg": {"file": "w.bin"}, "ids": [1, 2]}
    same = ModelSpec("m", "timm:resnet18", kwargs={"ids": [1, 2], "cfg": {"file": "w.bin"}, "drop_rate": 0.1})
    assert hash(spec) == hash(same) and spec == same
    assert spec.to_dict()["kwargs"] == spec.kwargs_dict()


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"source": '"python:toy_models:tiny_cnn"'}, "name"),
        ({"name": '"m"'}, "source"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "input_size": '"big"'}, "input_size"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "input_size": "-3"}, "input_size"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "input_size": "[1, 2, 3]"}, "input_size"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "mean": "[0, 0, 0]", "std": "[1, 0, 1]"}, "std"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "mean": "[0, 0]", "std": "[1, 1, 1]"}, "mean"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "mean": "[0, 0, 0]"}, "std"),
        ({"name": '"m"', "source": '"python:toy_models:tiny_cnn"', "normalize": '"zscore"'}, "normalize"),
        ({"name": '"m"', "source": '"ftp:host/model"'}, "source"),
        ({"name": '"m"', "source": '"python:no_callable_here"'}, "source"),
        ({"name": '"m"', "source": '"checkpoint:a.pt"'}, "constructor"),
        ({"name": '"m"', "source": '"timm:resnet18"', "constructor": '"python:a:b"'}, "constructor"),
        ({"name": '"m"', "source": '"timm:resnet18"', "pretrained": '"yes"'}, "pretrained"),
        ({"name": '"m"', "source": '"timm:resnet18"', "kwargs": "3"}, "kwargs"),
        ({"name": '"m"', "source": '"timm:resnet18"', "encodr": '"layer4"'}, "encodr"),
        ({"name": "7", "source": '"timm:resnet18"'}, "name"),
    ],
)
def test_bad_field_names_model_field_and_file(tmp_path, fields, field):
    good = toml_entry(name='"ok"', source='"python:toy_models:tiny_cnn"')
    path = write(tmp_path, "zoo.toml", good + toml_entry(**fields))
    with pytest.raises(ZooError) as info:
        load_zoo(path)
    message = str(info.value)
    assert f"'{field}'" in message
    assert str(path) in message
    expected_model = "model 'm'" if fields.get("name") == '"m"' else "model #2"
    assert expected_model in message


def test_zoo_error_is_an_input_error(tmp_path):
    path = write(tmp_path, "zoo.toml", toml_entry(name='"m"'))
    with pytest.raises(InputError):
        load_zoo(path)


def test_yaml_errors_name_model_field_and_file(tmp_path):
    path = write(tmp_path, "zoo.yml", """
        models:
          - name: first
            source: "timm:resnet18"
          - source: "timm:resnet18"
            input_size: 0
    """)
    with pytest.raises(ZooError, match=r"model #2: field 'name'") as info:
        load_zoo(path)
    assert str(path) in str(info.value)


def test_duplicate_names_rejected(tmp_path):
    text = toml_entry(name='"m"', source='"timm:a"') + toml_entry(name='"m"', source='"timm:b"')
    with pytest.raises(ZooError, match="duplicate") as info:
        load_zoo(write(tmp_path, "zoo.toml", text))
    assert "'m'" in str(info.value)


def test_yaml_python_tags_are_refused(tmp_path):
    path = write(tmp_path, "zoo.yaml", """
        models:
          - name: evil
            source: !!python/object/apply:os.system ["echo pwned"]
    """)
    with pytest.raises(ZooError, match="not valid YAML") as info:
        load_zoo(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("zoo.toml", '[[models]]\nname = "m"\nsource = "timm:a"\n', r"\[\[model\]\], singular"),
        ("zoo.toml", "", "no models"),
        ("zoo.toml", "[[model]\n", "not valid TOML"),
        ("zoo.yaml", "model:\n  - name: m\n", "top-level key 'model'"),
        ("zoo.yaml", "- name: m\n", "'models:' list"),
        ("zoo.json", "{}", "unknown zoo file type"),
    ],
)
def test_malformed_files(tmp_path, name, text, match):
    path = write(tmp_path, name, text)
    with pytest.raises(ZooError, match=match) as info:
        load_zoo(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ZooError, match="not found"):
        load_zoo(tmp_path / "nope.toml")


def test_spec_from_dict_direct():
    spec = spec_from_dict({"name": "m", "source": "torchscript:m.pt", "input_size": [8, 8]},
                          "inline", base_dir=Path("/models"))
    assert spec.source == f"torchscript:{Path('/models/m.pt')}"
    with pytest.raises(ZooError, match=r"inline: model 'm': field 'normalize'"):
        spec_from_dict({"name": "m", "source": "timm:a", "normalize": "half", "mean": [0, 0, 0]}, "inline")


def test_modelspec_validates_on_construction():
    with pytest.raises(ZooError, match=r"model 'm': field 'std'"):
        ModelSpec("m", "timm:a", std=(1.0, 0.0, 1.0))
    with pytest.raises(ZooError, match=r"field 'source'"):
        ModelSpec("m", "nonsense")
