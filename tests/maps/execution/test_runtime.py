"""The runtime levers (worker processes, channels-last, autocast) change how maps are computed, not what; and
counting what a pass keeps for its backward keeps nothing alive."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from support.live import live_tensors
from modelspace import ModelSpace
from modelspace.errors import InputError
from modelspace.maps import LocalExecutor, Runtime
from modelspace.maps.execution.runtime import SavedBytes
from modelspace.models import InputTransform, LoadedModel, ModelSpec, load_model, load_zoo
from modelspace.probe import ProbeSet
from modelspace.world.build import ZOO_DIR


@pytest.fixture(scope="module")
def specs():
    by_name = {s.name: s for s in load_zoo(ZOO_DIR / "zoo.toml")}
    return [by_name["depth_z"], by_name["depth_z@resnet80"], by_name["edges2d"]]


@pytest.fixture(scope="module")
def probe():
    gen = torch.Generator().manual_seed(5)
    return ProbeSet.from_array(torch.randint(0, 256, (24, 3, 48, 48), dtype=torch.uint8, generator=gen))


def fitted(specs, probe, store, **runtime) -> ModelSpace:
    return ModelSpace(store=store, runtime=Runtime(batch_size=8, **runtime), executor=LocalExecutor(shard_size=12),
                      progress=False).fit(specs, probe)


def stored_maps(space: ModelSpace, method: str) -> dict[str, np.ndarray]:
    return space.maps(method)


@pytest.mark.slow
def test_worker_processes_and_channels_last_give_the_same_maps(specs, probe, tmp_path):
    plain = fitted(specs, probe, tmp_path / "plain")
    levered = fitted(specs, probe, tmp_path / "levered", workers=2, channels_last=True)
    for method in (m.id for m in plain.methods_):  # the maps' methods (the default DDS has none)
        for name, maps in stored_maps(plain, method).items():
            np.testing.assert_allclose(stored_maps(levered, method)[name], maps, atol=2e-3)  # float16 storage
        np.testing.assert_allclose(levered.results_[method].affinity, plain.results_[method].affinity, atol=1e-5)


def test_uint8_batches_from_workers_equal_the_probe_batches(probe):
    batches = list(Runtime(workers=2).batches(probe, 3, 20, 5))
    assert [len(b) for b in batches] == [5, 5, 5, 2]
    torch.testing.assert_close(torch.cat(batches), probe.batch(3, 20), rtol=0, atol=0)


@pytest.mark.slow
def test_bf16_maps_agree_with_fp32_and_are_stored_apart(specs, probe, tmp_path):
    store = tmp_path / "store"
    fp32 = fitted(specs, probe, store)
    bf16 = fitted(specs, probe, store, precision="bf16")
    for method in (m.id for m in fp32.methods_):
        entries = {m.entries[method].method for m in bf16.members_.values()}
        exact_entries = {m.entries[method].method for m in fp32.members_.values()}
        assert entries == {f"{e}@bf16" for e in exact_entries}  # its own key: never mixed with fp32 maps
        for name, exact in stored_maps(fp32, method).items():
            approx = stored_maps(bf16, method)[name]
            a, b = exact.reshape(len(exact), -1), approx.reshape(len(approx), -1)
            cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            assert cosines.min() > 0.9, (method, name, cosines.min())
            assert cosines.mean() < 1 - 1e-6  # bf16 did run: the maps are not the fp32 ones
        assert np.abs(bf16.results_[method].affinity - fp32.results_[method].affinity).max() < 0.05


def test_runtime_options_are_checked_by_name(specs, probe):
    with pytest.raises(InputError, match="precision"):
        Runtime(precision="fp8")
    with pytest.raises(InputError, match="workers"):
        Runtime(workers=-1)
    with pytest.raises(InputError, match="device"):
        Runtime(device="gpu:0")


def test_channels_last_prepares_model_and_input(specs):
    runtime = Runtime(channels_last=True)
    module = runtime.prepare(load_model(specs[1]).module)
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert runtime.layout(torch.zeros(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


class _Gated(nn.Module):
    """conv → ReLU scaled by a squeeze-excitation gate, which ε-LRP holds constant: its backward never
    reaches the gate's branch (a sigmoid, which saves its own output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return h * torch.sigmoid(self.fc(h.mean((2, 3), keepdim=True)))


def test_counting_saved_bytes_keeps_alive_no_graph_that_no_backward_reached() -> None:
    module = nn.Linear(4, 4)
    with SavedBytes(module) as saved:
        out = torch.sigmoid(module(torch.rand(2, 4)))  # sigmoid saves its own output for its backward
    alive = weakref.ref(out)
    del out
    gc.collect()
    assert saved.bytes > 0
    assert alive() is None


def test_a_fit_leaves_no_graph_alive_where_lrp_holds_a_gate_constant(tmp_path) -> None:
    model = LoadedModel(spec=ModelSpec(name="gated", source="python:x:y"), module=_Gated().eval(), encoder="",
                        transform=InputTransform((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), key="gated")
    probe = ProbeSet.from_array(torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(3)))
    space = ModelSpace(methods=["lrp_epsilon"], baselines=[], store=tmp_path, runtime=Runtime(batch_size=4),
                       progress=False)
    space.fit([model], probe)  # passes sized by what they keep (the CPU's default budget), so counted
    with_graph = [t for t in live_tensors() if t.grad_fn is not None]
    assert with_graph == []
