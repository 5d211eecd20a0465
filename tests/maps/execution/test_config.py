"""The runtime and executor configuration values, and the CLI flags made from their fields."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from modelspace import LocalExecutor, ModelSpace, RayExecutor, Runtime
from modelspace.cli import build_parser, main
from modelspace.errors import InputError
from modelspace.maps import EXECUTORS, Executor
from modelspace.options import from_args
from modelspace.transferability import DEFAULT_SCORES

# The flags as the README and earlier versions of the CLI spell them: the fields must keep them.
FLAGS = {Runtime: {"device": "--device", "precision": "--precision", "channels_last": "--channels-last",
                   "workers": "--workers", "pass_memory": "--pass-memory", "batch_size": "--batch-size"},
         Executor: {"shard_size": "--shard-size"},
         RayExecutor: {"address": "--ray-address", "gpus_per_model": "--gpus-per-model",
                       "cpus_per_model": "--cpus-per-model", "shared_store": "--shared-store"}}


def _args(*extra: str):
    return build_parser().parse_args(["run", "zoo.toml", "probe/", *extra])


@pytest.mark.parametrize("command", ["run", "embed", "affinity"])
def test_the_parsed_defaults_are_the_objects_defaults(command) -> None:
    args = build_parser().parse_args([command, "zoo.toml", "probe/"])
    assert from_args(Runtime, args) == Runtime()
    assert args.executor == "local"
    assert from_args(EXECUTORS[args.executor], args) == LocalExecutor()
    assert from_args(RayExecutor, args) == RayExecutor()


def test_every_flag_sets_its_field() -> None:
    args = _args("--device", "cpu:0", "--precision", "bf16", "--channels-last", "--workers", "2",
                 "--pass-memory", "512", "--batch-size", "8", "--shard-size", "7", "--executor", "ray",
                 "--ray-address", "auto", "--gpus-per-model", "0.5", "--cpus-per-model", "2", "--shared-store")
    assert from_args(Runtime, args) == Runtime(device="cpu:0", precision="bf16", channels_last=True, workers=2,
                                               pass_memory=512 * 2**20, batch_size=8)
    assert from_args(EXECUTORS[args.executor], args) == RayExecutor(
        shard_size=7, address="auto", gpus_per_model=0.5, cpus_per_model=2.0, shared_store=True)


@pytest.mark.parametrize("command", ["run", "embed"])
def test_the_help_shows_each_flag_with_the_objects_default(command, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    raw = capsys.readouterr().out
    text = " ".join(raw.split())  # argparse wraps lines
    entries = {e.split()[0]: " ".join(e.split()) for e in re.split(r"\n  (?=-)", raw)[1:]}  # option -> its help
    for flags in FLAGS.values():
        for flag in flags.values():
            assert flag in entries, flag
    for flag, value in (("--batch-size", Runtime().batch_size), ("--shard-size", Executor().shard_size),
                        ("--device", Runtime().device), ("--precision", Runtime().precision),
                        ("--workers", Runtime().workers), ("--cpus-per-model", 1), ("--gpus-per-model", 0)):
        assert f"(default {value})" in entries[flag], (flag, entries[flag])
    if command == "run":
        assert f"default: {' '.join(DEFAULT_SCORES)};" in text
        assert build_parser().parse_args(["run", "z", "p"]).label_scores == list(DEFAULT_SCORES)


@pytest.mark.parametrize("make, field", [
    (lambda: Runtime(batch_size=0), "batch_size"),
    (lambda: Runtime(precision="fp8"), "precision"),
    (lambda: Runtime(workers=-1), "workers"),
    (lambda: Runtime(pass_memory=1.5), "pass_memory"),
    (lambda: Runtime(channels_last="yes"), "channels_last"),
    (lambda: Runtime(pin_memory=1), "pin_memory"),
    (lambda: Runtime(device="gpu:0"), "device"),
    (lambda: LocalExecutor(shard_size=0), "shard_size"),
    (lambda: RayExecutor(shard_size=True), "shard_size"),
    (lambda: RayExecutor(address=6379), "address"),
    (lambda: RayExecutor(gpus_per_model=-1), "gpus_per_model"),
    (lambda: RayExecutor(gpus_per_model=1.5), "gpus_per_model"),
    (lambda: RayExecutor(cpus_per_model="one"), "cpus_per_model"),
    (lambda: RayExecutor(cpus_per_model=0), "cpus_per_model"),
    (lambda: RayExecutor(shared_store="yes"), "shared_store"),
    (lambda: RayExecutor(max_retries=-1), "max_retries"),
    (lambda: RayExecutor(runtime_env=["working_dir"]), "runtime_env"),
])
def test_a_bad_field_is_refused_when_the_value_is_made(make, field) -> None:
    with pytest.raises(InputError, match=rf"^{field}:"):
        make()


def test_the_values_are_immutable_and_compare_by_their_fields() -> None:
    runtime = Runtime(batch_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.batch_size = 16  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RayExecutor().address = "auto"  # type: ignore[misc]
    assert runtime == Runtime(batch_size=8) != Runtime()
    assert hash(runtime) == hash(Runtime(batch_size=8))
    assert dataclasses.replace(runtime, device="cuda").device == "cuda" and runtime.device == "cpu"


def test_gpus_per_model_is_checked_against_the_runtimes_device() -> None:
    RayExecutor(gpus_per_model=0.25).check_runtime(Runtime(device="cuda"))  # no CUDA needed to check
    with pytest.raises(InputError, match="gpus_per_model"):
        RayExecutor(gpus_per_model=0.25).check_runtime(Runtime())
    with pytest.raises(InputError, match="gpus_per_model"):
        RayExecutor().check_runtime(Runtime(device="cuda"))


def test_a_ray_executor_is_made_without_importing_ray() -> None:
    code = ("import sys\nsys.modules['ray'] = None  # import ray raises ImportError\n"
            "from modelspace import ModelSpace, RayExecutor\n"
            "space = ModelSpace(executor=RayExecutor(address='auto', cpus_per_model=2))\n"
            "print(space.executor.address, space.executor.cpus_per_model)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["auto", "2"]


@pytest.mark.parametrize("kwargs, argument", [
    ({"runtime": "cuda"}, "runtime"),
    ({"executor": "ray"}, "executor"),
    ({"executor": Executor()}, "executor"),  # the base holds options, it runs nothing
])
def test_modelspace_takes_only_configuration_values(kwargs, argument) -> None:
    with pytest.raises(InputError, match=rf"^{argument}:"):
        ModelSpace(progress=False, **kwargs).embed([], None)


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "0"], "batch_size: expected an integer >= 1, got 0"),
    (["--shard-size", "-3"], "shard_size: expected an integer >= 1, got -3"),
    (["--workers", "-1"], "workers: expected an integer >= 0, got -1"),
    (["--pass-memory", "0"], "pass_memory: expected an integer >= 1 or None, got 0"),
    (["--device", "gpu:0"], "--device 'gpu:0': not a torch device"),
    (["--executor", "ray", "--cpus-per-model", "0"], "cpus_per_model: 0 with no GPUs"),
])
def test_a_bad_flag_exits_2_naming_its_field(extra, message, tmp_path, capsys) -> None:
    (tmp_path / "zoo.toml").write_text('[[model]]\nname = "cnn"\nsource = "python:toy_models:tiny_cnn"\n'
                                       'input_size = 32\n')
    from PIL import Image

    (tmp_path / "probe").mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "probe" / f"{i}.png")
    code = main(["embed", str(tmp_path / "zoo.toml"), str(tmp_path / "probe"), "--store", str(tmp_path / "s"),
                 "--quiet", *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before any work
