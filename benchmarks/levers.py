"""Section 5: the runtime levers. Channels-last and bf16 autocast against the default, side by side
on the same batch, with the cosine agreement of the maps; worker processes for data loading end to end."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch

from modelspace.attribution import DEFAULT_METHODS, attribute
from modelspace.maps import Runtime

from harness import fmt_s, interleaved, progress, short

def per_image_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    return (torch.nn.functional.cosine_similarity(a, b, dim=1)).numpy()


def _maps(model, runtime: Runtime, method: str) -> torch.Tensor:
    x = runtime.layout(model.x)
    with runtime.autocast():
        return attribute(model.module, x, method, encoder=model.encoder, model_name=model.name).float()


def run_levers(report, cfg, models: list) -> None:
    """channels-last and bf16 autocast vs default on CPU (the device here), per model and method."""
    rows, agreement_rows = [], []
    for model in models:
        progress(f"… levers {model.name}")
        variants: dict[str, Callable[[], Any]] = {}
        runtimes = {"default": Runtime(), "channels-last": Runtime(channels_last=True), "bf16": Runtime(precision="bf16")}
        reference = {}
        for method in DEFAULT_METHODS:
            try:
                reference[method] = _maps(model, runtimes["default"], method)
            except Exception as exc:  # ε-LRP refused (e.g. attention): reported, not fatal
                agreement_rows.append([model.name, method, f"n/a ({short(str(exc), 80)})", "", ""])
        method = "saliency"
        converted = _ChannelsLast(model, runtimes["channels-last"])
        for label, rt in runtimes.items():
            variants[label] = lambda rt=rt, m=(converted if label == "channels-last" else model): _maps(m, rt, method)
        timings = interleaved(variants, cfg.warmup, cfg.repeats, cfg.min_sample)
        rows.append([model.name, model.shape, fmt_s(timings.median("default")),
                     timings.cell("channels-last", "default"), timings.cell("bf16", "default")])
        for method, exact in reference.items():
            for label in ("channels-last", "bf16"):
                target = converted if label == "channels-last" else model
                cos = per_image_cosines(_maps(target, runtimes[label], method), exact)
                agreement_rows.append([model.name, method, label, f"{cos.mean():.5f}", f"{cos.min():.5f}"])

    report.add("## 5. Runtime levers (CPU here)")
    report.add()
    report.add("Time of saliency under each lever / the default (fp32, contiguous NCHW), interleaved as in "
               "section 1. On a CPU neither lever is expected to pay: channels-last and autocast are GPU levers "
               "(tensor cores); these rows show what they cost or save on this machine, and the agreement table "
               "shows what they do to the maps, which does not depend on the device.")
    report.add()
    report.table(["model", "input", "default", "channels-last / default", "bf16 autocast / default"], rows)
    report.add("Cosine agreement of the maps with the default fp32 maps (per probe image; mean and worst):")
    report.add()
    report.table(["model", "method", "lever", "mean cosine", "min cosine"], agreement_rows)
    report.add()


class _ChannelsLast:
    """A channels-last copy of a bench model (its own module, converted once; same encoder and input)."""

    def __init__(self, model, runtime: Runtime) -> None:
        self.module = runtime.prepare(copy.deepcopy(model.module))
        self.encoder, self.name, self.x = model.encoder, model.name, model.x


def run_workers(report, cfg) -> None:
    """End-to-end embedding of zoo models with worker processes feeding batches vs in-process."""
    from modelspace import ModelSpace, ProbeSet
    from modelspace.models import load_zoo
    from modelspace.world.build import ZOO_DIR

    specs = load_zoo(ZOO_DIR / "zoo.toml")[: (2 if cfg.repeats == 1 else 4)]
    n = 16 if cfg.repeats == 1 else 256
    probe = ProbeSet.from_array(np.random.default_rng(4).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8))
    times: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(max(1, cfg.repeats // 2)):
        for workers in times:
            with tempfile.TemporaryDirectory() as store:
                space = ModelSpace(store=store, runtime=Runtime(workers=workers, batch_size=32), progress=False)
                start = time.perf_counter()
                space.embed(specs, probe)
                times[workers].append(time.perf_counter() - start)
    t0, t2 = statistics.median(times[0]), statistics.median(times[2])
    report.add(f"Data loading: `ModelSpace.embed` of {len(specs)} zoo models × {n} probe images (3 methods): "
               f"{fmt_s(t0)} in-process, {fmt_s(t2)} with 2 worker processes (ratio {t2 / t0:.2f}). "
               "Workers only help when preparing batches competes with a GPU for time; on this 2-core CPU they "
               "compete with the attribution itself.")
    report.add()
