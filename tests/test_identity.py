"""identity: an estimator's id, store key and file names, formed and read in one place; estimators as
immutable values; passes that wrap any method."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch

import toy_models
from modelspace.attribution import METHODS, attribute, get_method
from modelspace.errors import InputError
from modelspace.identity import EstimatorId, find, label, name_of, same_estimator, stem, store_folder
from modelspace.registry import Declared
from modelspace.results import file_stem
from modelspace.similarity import BASELINES, get_baseline
from modelspace.transferability import SCORES

SRC = Path(__file__).resolve().parent.parent / "src" / "modelspace"


# ----------------------------------------------------------------------------- ids and keys


# What earlier versions wrote for these specs: the ids of results folders and the keys of stores
# (the store keys are those of tests/data/old_store's manifest, written by 6760817).
WRITTEN_BEFORE = [
    ("sal", "fp32", "saliency", "saliency"),
    ("gxi", "fp32", "gradient_x_input", "gradient_x_input"),
    ("lrp", "fp32", "lrp_epsilon(epsilon=1e-06)", "lrp_epsilon(epsilon=1e-06)#rules2"),
    ("lrp_epsilon(epsilon=0.01)", "bf16", "lrp_epsilon(epsilon=0.01)", "lrp_epsilon(epsilon=0.01)#rules2@bf16"),
    ("saliency", "fp16", "saliency", "saliency@fp16"),
    ("modelgif(steps=2)", "fp32", "modelgif(seed=0,steps=2)", "modelgif(seed=0,steps=2)"),
    ("smoothgrad(samples=2)", "fp32", "smoothgrad(noise=0.15,samples=2,seed=0)", "smoothgrad(noise=0.15,samples=2,seed=0)"),
    ("smoothgrad", "fp32", "smoothgrad(noise=0.15,samples=8,seed=0)", "smoothgrad(noise=0.15,samples=8,seed=0)"),
    ("ig(steps=2)", "fp32", "integrated_gradients(steps=2)", "integrated_gradients(steps=2)"),
    ("ig", "bf16", "integrated_gradients(steps=16)", "integrated_gradients(steps=16)@bf16"),
    ("transformed(method='lrp',channel_mean=True)", "fp32",
     "transformed(channel_mean=True,method='lrp_epsilon(epsilon=1e-06)')",
     "transformed(channel_mean=True,method='lrp_epsilon(epsilon=1e-06)#rules2')"),
    ("gxi(baseline='mean')", "fp32", "gradient_x_input(baseline='mean')", "gradient_x_input(baseline='mean')"),
    ("subspace", "fp32", "gradient_x_input_subspace(directions=8,seed=0)", "gradient_x_input_subspace(directions=8,seed=0)"),
    ("gxi_groups", "fp32", "gradient_x_input_groups(directions=8)", "gradient_x_input_groups(directions=8)"),
]


@pytest.mark.parametrize("spec, precision, written_id, written_key", WRITTEN_BEFORE)
def test_methods_keep_the_ids_and_store_keys_written_before(spec, precision, written_id, written_key):
    method = get_method(spec)
    assert method.id == written_id
    assert method.ident.at(precision).store_key == written_key
    # and the key read back names the same estimator
    read = EstimatorId.parse(written_key)
    assert (read.store_key, read.precision, read.name) == (written_key, precision, method.name)
    assert get_method(written_id) == method


def test_baselines_keep_their_ids_and_prepared_keys():
    assert get_baseline("cka").id == "linear_cka"
    assert get_baseline("rsa").id == "rsa(metric='correlation')"
    assert get_baseline("dds").id == "dds(debiased=True,kernel='cosine')"  # sigma only with the rbf kernel
    assert get_baseline("dds", kernel="rbf").id == "dds(debiased=True,kernel='rbf',sigma=0.5)"
    assert get_baseline("depara").id == "depara(edge_weight=0.25,method='gradient_x_input')"
    dds = get_baseline("dds").ident
    assert dds.at("bf16").prepared_key == "prepared:dds(debiased=True,kernel='cosine')@bf16"
    assert EstimatorId.parse(dds.prepared_key) == dds
    assert EstimatorId.of("x", {"a": 1}, version=3, version_tag="prepare").store_key == "x(a=1)#prepare3"
    assert SCORES.get("logme").id == "logme(regression=False)"  # the published solver is unnamed
    assert SCORES.get("logme", max_iter=50).id == "logme(max_iter=50,regression=False)"
    assert SCORES.get("gbc").id == "gbc(covariance='spherical')"


def test_store_folders_are_those_of_the_old_store():
    keys = ["saliency", "lrp_epsilon(epsilon=1e-06)#rules2", "lrp_epsilon(epsilon=0.01)#rules2@bf16",
            "transformed(channel_mean=True,method='lrp_epsilon(epsilon=1e-06)#rules2')"]
    arrays = Path(__file__).parent / "data" / "old_store" / "store" / "arrays"
    written = {p.name for p in arrays.glob("*/*/*") if p.is_dir()}
    assert {store_folder(k) for k in keys} <= written
    assert store_folder("saliency") == "saliency-6dac9163"


def test_parse_reads_names_aliases_and_literals_and_refuses_the_rest():
    assert EstimatorId.parse("lrp", METHODS.aliases) == EstimatorId("lrp_epsilon")
    read = EstimatorId.parse("smoothgrad(method='lrp_epsilon(epsilon=0.01)', samples=2)")
    assert read.kwargs == {"method": "lrp_epsilon(epsilon=0.01)", "samples": 2}
    assert read.text == "smoothgrad(method='lrp_epsilon(epsilon=0.01)',samples=2)"
    for bad in ("f(1)", "f(**a)", "f(a=b)", "f(a=", "lrp_epsilon(epsilon=1e-06)@fp64"):
        with pytest.raises(InputError):
            EstimatorId.parse(bad)
    with pytest.raises(InputError, match="precision"):
        EstimatorId("saliency", precision="fp64")


def test_stems_and_labels_name_an_estimator_by_its_name_unless_two_share_it():
    ids = ["saliency", "lrp_epsilon(epsilon=1e-06)", "lrp_epsilon(epsilon=0.01)", "gradient_x_input(baseline='mean')"]
    assert stem("saliency", ids) == "saliency"
    assert stem("lrp_epsilon(epsilon=0.01)", ids) == "lrp_epsilon_epsilon_0.01"
    assert stem("gradient_x_input(baseline='mean')", [*ids, "gradient_x_input"]) == "gradient_x_input_baseline__mean"
    assert file_stem("gradient_x_input(baseline='mean')", ids) == "gradient_x_input"
    assert label("lrp_epsilon(epsilon=0.01)", ids) == "lrp_epsilon(epsilon=0.01)"
    assert label("saliency", ids) == "saliency" and label("logme(regression=False) n=10", []) == "logme"
    assert name_of("logme n=10") == "logme n=10" and name_of(EstimatorId("x")) == "x"
    assert same_estimator("lrp_epsilon", "lrp_epsilon(epsilon=0.01)") and not same_estimator("saliency", "smoothgrad")
    assert find("lrp", ids, METHODS.aliases) == "lrp_epsilon(epsilon=1e-06)"
    assert find("gxi", ids, METHODS.aliases) == "gradient_x_input(baseline='mean')"
    assert find("cka", ids, BASELINES.aliases) is None and find("no(", ids) is None


# ----------------------------------------------------------------------------- immutable values


NEEDED = {"transformed": {"absolute": True}}
"""Arguments without which an estimator is refused (a transform that changes nothing)."""


def _registered():
    for registry in (METHODS, BASELINES, SCORES):
        for name in sorted(registry):
            yield registry, name


@pytest.mark.parametrize("registry, name", list(_registered()), ids=lambda v: v if isinstance(v, str) else v.kind)
def test_every_estimator_is_a_frozen_value_whose_id_comes_from_its_fields(registry, name):
    estimator = registry.get(name, **NEEDED.get(name, {}))
    assert isinstance(estimator, Declared) and dataclasses.is_dataclass(estimator)
    fields = {f.name for f in dataclasses.fields(estimator)}
    assert set(estimator.params) <= fields
    for field in fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(estimator, field, getattr(estimator, field))
    again = registry.get(estimator.id)  # the id names the same value
    assert again == estimator and hash(again) == hash(estimator) and again.id == estimator.id
    assert registry.get(name, **{f: getattr(estimator, f) for f in fields}) == estimator


@pytest.mark.parametrize("spec, argument", [
    ("smoothgrad(samples=2.5)", "smoothgrad: samples"),
    ("smoothgrad(samples=True)", "smoothgrad: samples"),
    ("smoothgrad(noise=-0.1)", "smoothgrad: noise"),
    ("smoothgrad(seed=-1)", "smoothgrad: seed"),
    ("smoothgrad(method='no_such_method')", "no_such_method"),
    ("integrated_gradients(steps=0)", "integrated_gradients: steps"),
    ("integrated_gradients(baseline='grey')", "integrated_gradients: baseline must be one of zero, mean, blur"),
    ("lrp_epsilon(epsilon=0)", "lrp_epsilon: epsilon"),
    ("lrp_epsilon(epsilon='x')", "lrp_epsilon: epsilon"),
    ("modelgif(steps=1.0)", "modelgif: steps"),
])
def test_method_arguments_are_checked_with_messages_naming_them(spec, argument):
    with pytest.raises(InputError, match=argument.replace("(", r"\(")):
        get_method(spec)


@pytest.mark.parametrize("registry, spec, argument", [
    (BASELINES, "svcca(variance=1.5)", "svcca: variance"),
    (BASELINES, "dds(debiased=1)", "dds: debiased"),
    (BASELINES, "dds(kernel='gauss')", "dds: kernel must be one of cosine, laplacian, rbf"),
    (BASELINES, "rsa(metric=3)", "rsa: metric"),
    (SCORES, "logme(max_iter=0)", "logme: max_iter"),
    (SCORES, "logme(eps=-1.0)", "logme: eps"),
    (SCORES, "transrate(eps=float('nan'))", "transrate"),
    (SCORES, "gbc(covariance='full')", "gbc: covariance"),
])
def test_baseline_and_score_arguments_are_checked_with_messages_naming_them(registry, spec, argument):
    with pytest.raises(InputError, match=argument):
        registry.get(spec)


# ----------------------------------------------------------------------------- wrapping passes


@pytest.fixture
def model():
    return toy_models.tiny_cnn()


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def _noisy(x: torch.Tensor, samples: int, noise: float, seed: int) -> list[torch.Tensor]:
    """SmoothGrad's noisy copies, written out: σ = noise × the batch's value range, seeded Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    scale = noise * float(x.max() - x.min())
    return [x + scale * torch.randn(x.shape, generator=generator) for _ in range(samples)]


def test_smoothgrad_over_lrp_is_the_mean_of_lrp_maps_at_the_noisy_copies(model):
    x = _x()
    got = attribute(model, x, "smoothgrad(method='lrp_epsilon(epsilon=0.01)',samples=3,noise=0.2,seed=5)", "encoder")
    expected = torch.stack([attribute(model, xi, get_method("lrp", epsilon=0.01), "encoder")
                            for xi in _noisy(x, 3, 0.2, 5)]).mean(0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert got.abs().sum() > 0


def test_default_smoothgrad_is_still_the_absolute_mean_gradient(model):
    x = _x()
    got = attribute(model, x, "smoothgrad(samples=3)", "encoder")
    expected = torch.stack([attribute(model, xi, "gradient", "encoder") for xi in _noisy(x, 3, 0.15, 0)]).mean(0).abs()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


def test_smoothgrad_over_gradient_x_input_reads_the_mean_gradient_at_the_image(model):
    x = _x()
    got = attribute(model, x, "smoothgrad(method='gxi',samples=2)", "encoder")
    expected = x * torch.stack([attribute(model, xi, "gradient", "encoder") for xi in _noisy(x, 2, 0.15, 0)]).mean(0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


def test_integrated_gradients_over_lrp_integrates_lrp_on_the_path(model):
    x = _x()
    got = attribute(model, x, "integrated_gradients(method='lrp',steps=4)", "encoder")
    path = [((i + 0.5) / 4) * x for i in range(4)]  # from the zero image
    expected = x * torch.stack([attribute(model, p, "lrp", "encoder") for p in path]).mean(0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_with_a_baseline_over_a_method_by_name(model):
    method = get_method("ig(method='lrp_epsilon(epsilon=0.01)',baseline='mean',steps=2)")
    assert method.method == get_method("lrp", epsilon=0.01) and method.cost == 2
    x = _x()
    x0 = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    path = [x0 + ((i + 0.5) / 2) * (x - x0) for i in range(2)]
    expected = (x - x0) * torch.stack([attribute(model, p, method.method, "encoder") for p in path]).mean(0)
    torch.testing.assert_close(attribute(model, x, method, "encoder"), expected, rtol=1e-5, atol=1e-7)


def test_wrapped_methods_name_their_method_only_when_it_is_not_the_default():
    assert get_method("smoothgrad(method='saliency')").id == get_method("smoothgrad").id
    assert get_method("ig(method='grad')").id == "integrated_gradients(steps=16)"
    nested = get_method("smoothgrad(method=\"transformed(method='lrp',absolute=True)\",samples=2)")
    assert nested.store_id == ("smoothgrad(method=\"transformed(absolute=True,method='lrp_epsilon(epsilon=1e-06)#rules2')\","
                               "noise=0.15,samples=2,seed=0)")
    assert get_method(nested.id) == nested


# ----------------------------------------------------------------------------- one place


def id_handling(source: str) -> list[tuple[int, str]]:
    """Where ``source`` forms or reads an estimator id by hand: splitting or searching at "(" or "#",
    testing for "(", a literal holding a store key's marks, or an f-string that writes ``{name}(...)``,
    ``{a}@{b}``, ``{a}#{b}`` or ``{k}={v!r}``. Docstrings are prose and are not read."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("split", "rsplit", "partition", "rpartition", "index", "find")
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in ("(", "#")):
            found.append((node.lineno, f".{node.func.attr}({node.args[0].value!r})"))
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value == "("
              and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)):
            found.append((node.lineno, '"(" in ...'))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and any(mark in node.value for mark in ("#rules", "#prepare", "prepared:"))):
            found.append((node.lineno, f"literal {node.value!r}"))
        elif isinstance(node, ast.JoinedStr):
            v = node.values
            for i in range(len(v) - 1):
                text = v[i + 1].value if isinstance(v[i + 1], ast.Constant) else None
                if not isinstance(v[i], ast.FormattedValue) or not isinstance(text, str):
                    continue
                rest = v[i + 2:]
                if text.startswith("(") and any(isinstance(r, ast.Constant) and ")" in r.value for r in rest):
                    found.append((node.lineno, "f-string {name}(...)"))
                if rest and isinstance(rest[0], ast.FormattedValue) and (
                        text in ("@", "#") or text == "=" and rest[0].conversion == ord("r")):
                    found.append((node.lineno, f"f-string {{a}}{text}{{b}}"))
    return found


def test_ids_are_formed_and_read_only_in_the_identity_module():
    offences = {str(path.relative_to(SRC)): id_handling(path.read_text(encoding="utf-8"))
                for path in sorted(SRC.rglob("*.py")) if path.name != "identity.py"}
    assert {path: found for path, found in offences.items() if found} == {}
    assert id_handling((SRC / "identity.py").read_text(encoding="utf-8"))  # where they are: the check sees them


@pytest.mark.parametrize("planted", [
    'name = estimator.split("(")[0]',
    'base, _, _ = text.partition("(")',
    'key = text.split("#")[0]',
    'if "(" not in spec: pass',
    'key = f"{self.id}#rules{self.rules_version}"',
    'key = f"{method_id}@{precision}"',
    'key = "prepared:" + store_id',
    'text = f"{self.name}({inner})"',
    'inner = ",".join(f"{k}={v!r}" for k, v in params)',
])
def test_the_check_finds_an_id_formed_or_read_by_hand(planted):
    assert id_handling(f'"""A module."""\n\n\ndef f(self, estimator, text, spec, params, inner, method_id, precision, '
                       f'store_id):\n    """Docs may say #rules and prepared: freely."""\n    {planted}\n')


def test_the_cli_takes_a_wrapped_method_by_name_and_stores_it_under_its_key(tmp_path, capsys):
    import contextlib
    import shutil
    import sqlite3

    from modelspace.cli import main

    data = Path(__file__).parent / "data" / "old_store"
    for name in ("zoo.toml", "toy.py", "probe.npz"):
        shutil.copy(data / name, tmp_path / name)
    wrapped = "smoothgrad(method='lrp_epsilon(epsilon=0.01)',samples=2)"
    argv = ["embed", str(tmp_path / "zoo.toml"), str(tmp_path / "probe.npz"), "--store", str(tmp_path / "s"),
            "--methods", wrapped, "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    with contextlib.closing(sqlite3.connect(tmp_path / "s" / "manifest.sqlite")) as db:
        keys = {key for (key,) in db.execute("SELECT DISTINCT method FROM shards")}
    assert keys == {get_method(wrapped).store_id} == {
        "smoothgrad(method='lrp_epsilon(epsilon=0.01)#rules2',noise=0.15,samples=2,seed=0)"}
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["work"]["computed"] == 0  # found again under the same key
