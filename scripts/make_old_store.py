"""Write ``tests/data/old_store/``: a map store and a results folder made by an earlier modelspace.

`tests/test_identity_old_store.py` opens them with the current code: every estimator id the earlier
code wrote must still name the same stored maps (nothing is recomputed) and the results folder must
still load. The data were written by commit 6760817; to write them again::

    git worktree add /tmp/old-modelspace 6760817
    PYTHONPATH=/tmp/old-modelspace/src python scripts/make_old_store.py
    git worktree remove /tmp/old-modelspace

The script imports only what that version's public API offers. It writes, beside the zoo file
(``zoo.toml``, three small ``python:`` models of ``toy.py`` at 16 px) and the probe images
(``probe.npz``, three seeded random images):

``store/``
    the maps of `FP32_METHODS` in fp32 and of `BF16_METHODS` in bf16: names with parameters,
    aliases, a rules version (ε-LRP), SmoothGrad, integrated gradients and a transform of ε-LRP;
``results/``
    the output folder of the fp32 run, with the baselines `BASELINES` beside the methods; its
    figures (PNG) are removed to keep it small (reading a folder does not need them).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent / "tests" / "data" / "old_store"

FP32_METHODS = ["sal", "gxi", "modelgif(steps=2)", "lrp", "smoothgrad(samples=2)",
                "ig(steps=2)", "transformed(method='lrp',channel_mean=True)"]
"""Method specs of the fp32 run, as a user would write them (aliases included)."""
BF16_METHODS = ["lrp_epsilon(epsilon=0.01)"]
"""Method specs of the bf16 run."""
BASELINES = ["cka", "rsa"]
"""Baselines of the fp32 run."""
N_IMAGES = 3
SIZE = 16

ZOO = """\
[[model]]
name = "cnn_a"
task = "alpha"
source = "python:toy:tiny_cnn"
kwargs = {seed = 1}
input_size = 16

[[model]]
name = "cnn_b"
task = "beta"
source = "python:toy:tiny_cnn"
kwargs = {seed = 2}
input_size = 16

[[model]]
name = "cnn_c"
task = "gamma"
source = "python:toy:tiny_cnn"
kwargs = {seed = 3, width = 6}
input_size = 16
"""

TOY = '''"""The models of the old store: a conv-bn-relu-conv encoder, seeded (written by scripts/make_old_store.py)."""

import torch
from torch import nn


def tiny_cnn(seed: int = 0, width: int = 4) -> nn.Module:
    """A small CNN whose weights and batch-norm statistics are drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                              nn.Conv2d(width, width, 3, padding=1, stride=2))
        bn = model[1]
        with torch.no_grad():
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()
'''


def main() -> None:
    """Write the zoo, the probe images, the store and the results folder under `HERE` (replaced)."""
    from modelspace import ModelSpace, load_zoo
    from modelspace import results as results_module
    from modelspace.probe import ProbeSet

    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    (HERE / "zoo.toml").write_text(ZOO)
    (HERE / "toy.py").write_text(TOY)
    images = np.random.default_rng(0).integers(0, 256, size=(N_IMAGES, 3, SIZE, SIZE), dtype=np.uint8)
    ProbeSet.from_array(images).save(HERE / "probe.npz")
    probe = ProbeSet.load(HERE / "probe.npz")
    specs = load_zoo(HERE / "zoo.toml")

    space = ModelSpace(methods=FP32_METHODS, baselines=BASELINES, store=HERE / "store", shard_size=N_IMAGES,
                       progress=False).fit(specs, probe)
    results_module.save(HERE / "results", space.results_, space.summary())
    bf16 = ModelSpace(methods=BF16_METHODS, store=HERE / "store", precision="bf16", shard_size=N_IMAGES,
                      progress=False).fit(specs, probe)
    for run in (space, bf16):
        run.store_.close()
    for png in (HERE / "results").glob("*.png"):
        png.unlink()
    ids = {"fp32": [r.id for r in space.results_.values()], "bf16": [r.id for r in bf16.results_.values()]}
    print(json.dumps(ids, indent=1))
    for path in (HERE / "store").rglob("*"):  # only the store's files; nothing of this process's own state
        if path.name.endswith((".lock", "-wal", "-shm")):
            print(f"left over: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
