"""Section 7: 20 ResNet-50-class models × 1000 probe images at 224², end to end through ModelSpace on
CUDA (runs only where CUDA is; `--quick` runs a miniature of it on any device)."""

from __future__ import annotations

import tempfile
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from modelspace.attribution import DEFAULT_METHODS

from harness import fmt_s, loaded_model

def run_gpu(report, cfg, quick: bool) -> None:
    """20 ResNet-50-class models × 1000 probe images at 224², end to end, on CUDA."""
    from modelspace import LocalExecutor, ModelSpace, ProbeSet, Runtime
    from modelspace.models import ModelSpec

    report.add("## 7. GPU: 20 ResNet-50-class models × 1000 probe images at 224², end to end")
    report.add()
    cuda = torch.cuda.is_available()
    if not cuda and not quick:
        report.add("Not measured: no CUDA device on this machine (the target, ≤ 60 s on one H200, needs one).")
        report.add()
        return
    device = "cuda" if cuda else "cpu"
    n_models, n_img, size, batch = (20, 1000, 224, 128) if not quick else (2, 8, 64, 4)
    build = _resnet50_builder()
    probe = ProbeSet.from_array(np.random.default_rng(5).integers(0, 256, (n_img, 3, size, size), dtype=np.uint8))
    models = []
    for i in range(n_models):
        torch.manual_seed(100 + i)
        spec = ModelSpec(name=f"resnet50_{i:02d}", source="python:bench:resnet50", input_size=size)
        models.append(loaded_model(spec, build().eval().to(device), "layer4", f"bench-resnet50-{i:02d}"))
    rows, seconds_by = [], []
    for label, kw in (("fp32", {}), ("bf16 + channels-last", {"precision": "bf16", "channels_last": True})):
        if not cuda and label != "fp32":
            continue
        with tempfile.TemporaryDirectory() as store:
            space = ModelSpace(methods=list(DEFAULT_METHODS), store=store,
                               runtime=Runtime(device=device, batch_size=batch, workers=4 if cuda else 0, **kw),
                               executor=LocalExecutor(shard_size=256), progress=False)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            space.fit(models, probe)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        seconds_by.append(seconds)
        rows.append([label, device, f"{n_models} × {n_img} × {size}²", fmt_s(seconds),
                     f"{seconds / (n_models * n_img) * 1e3:.2f} ms", ", ".join(f.model for f in space.failures_) or "none"])
    report.table(["precision", "device", "models × images × size", "end to end (3 methods, maps stored, "
                  "affinities, trees)", "per model-image", "failures"], rows)
    if cuda:
        best = min(seconds_by)
        report.target("20 × 1000 × 224² ≤ 60 s", best <= 60, f"{best:.1f} s (paper: ~3.6 GPU-s per model-image)")
    else:
        report.add("(miniature on the CPU: checks the code path only; the figure above is not the GPU target)")
    report.add()


def _resnet50_builder() -> Callable[[], nn.Module]:
    """torchvision's ResNet-50 (random weights) where it imports, else a bottleneck ResNet-50 from
    Hugging Face transformers' config wrapped to expose `layer4`."""
    try:
        from torchvision.models import resnet50

        return lambda: resnet50(weights=None)
    except Exception:
        from transformers import ResNetConfig, ResNetModel

        config = ResNetConfig(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                              layer_type="bottleneck", hidden_act="relu")

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                net = ResNetModel(config)
                self.embedder, self.layer4 = net.embedder, net.encoder

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.layer4(self.embedder(x)).last_hidden_state

        return Wrapped
