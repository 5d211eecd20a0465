"""Benchmark sections for the runtime levers, the sketch and the GPU run (imported by bench.py).

  levers   channels-last and bf16 autocast against the default, side by side on the same batch,
           with the cosine agreement of the maps; worker processes for data loading end to end.
  sketch   random-projection sketches against the exact affinity: error on the built-in zoo's
           real maps, time and size on N = 100 synthetic models.
  gpu      20 ResNet-50-class models × 1000 probe images at 224², end to end through ModelSpace
           on CUDA (runs only where CUDA is; `--quick` runs a miniature of it on any device).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from modelspace.similarity import affinity_matrix
from modelspace.attribution import DEFAULT_METHODS, attribute
from modelspace.maps import Runtime
from modelspace.similarity import MapSketcher, sketched_affinity

LEVER_METHODS = DEFAULT_METHODS


def per_image_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    return (torch.nn.functional.cosine_similarity(a, b, dim=1)).numpy()


def _maps(model, runtime: Runtime, method: str) -> torch.Tensor:
    x = runtime.layout(model.x)
    with runtime.autocast():
        return attribute(model.module, x, method, encoder=model.encoder, model_name=model.name).float()


def run_levers(report, cfg, models: list, bench) -> None:
    """channels-last and bf16 autocast vs default on CPU (the device here), per model and method."""
    rows, agreement_rows = [], []
    for model in models:
        print(f"… levers {model.name}", flush=True)
        variants: dict[str, Callable[[], Any]] = {}
        runtimes = {"default": Runtime(), "channels-last": Runtime(channels_last=True), "bf16": Runtime(precision="bf16")}
        reference = {}
        for method in LEVER_METHODS:
            try:
                reference[method] = _maps(model, runtimes["default"], method)
            except Exception as exc:  # ε-LRP refused (e.g. attention): reported, not fatal
                agreement_rows.append([model.name, method, f"n/a ({bench.short(str(exc), 80)})", "", ""])
        method = "saliency"
        converted = _ChannelsLast(model, runtimes["channels-last"])
        for label, rt in runtimes.items():
            variants[label] = lambda rt=rt, m=(converted if label == "channels-last" else model): _maps(m, rt, method)
        timings = bench.interleaved(variants, cfg.warmup, cfg.repeats, cfg.min_sample)
        rows.append([model.name, model.shape, bench.fmt_s(timings.median("default")),
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


def run_workers(report, cfg, bench) -> None:
    """End-to-end embedding of zoo models with worker processes feeding batches vs in-process."""
    from modelspace import ModelSpace, ProbeSet
    from modelspace.models import load_zoo
    from modelspace.world.build import ZOO_DIR

    specs = load_zoo(ZOO_DIR / "zoo.toml")[: (2 if cfg.repeats == 1 else 4)]
    n = 64 if cfg.repeats == 1 else 256
    probe = ProbeSet.from_array(np.random.default_rng(4).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8))
    times: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(max(1, cfg.repeats // 2)):
        for workers in times:
            with tempfile.TemporaryDirectory() as store:
                space = ModelSpace(store=store, workers=workers, progress=False, batch_size=32)
                start = time.perf_counter()
                space.embed(specs, probe)
                times[workers].append(time.perf_counter() - start)
    t0, t2 = statistics.median(times[0]), statistics.median(times[2])
    report.add(f"Data loading: `ModelSpace.embed` of {len(specs)} zoo models × {n} probe images (3 methods): "
               f"{bench.fmt_s(t0)} in-process, {bench.fmt_s(t2)} with 2 worker processes (ratio {t2 / t0:.2f}). "
               "Workers only help when preparing batches competes with a GPU for time; on this 2-core CPU they "
               "compete with the attribution itself.")
    report.add()


def zoo_saliency_maps(n_images: int) -> tuple[list[str], list[np.ndarray]]:
    """The built-in zoo's saliency maps on rendered probe images, as (Np, F) arrays per model."""
    from modelspace import ModelSpace, ProbeSet
    from modelspace.world.demo import PROBE_SEED
    from modelspace.models import load_zoo
    from modelspace.world.build import ZOO_DIR
    from modelspace.world.render import render_batch

    specs = load_zoo(ZOO_DIR / "zoo.toml")
    probe = ProbeSet.from_array(render_batch(n_images, PROBE_SEED)["rgb"])
    space = ModelSpace(methods=["saliency"], progress=False).fit(specs, probe)
    maps = space.maps("saliency")
    return list(maps), [m.reshape(len(m), -1) for m in maps.values()]


def top5_overlap(estimate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over targets of |top-5 sources by estimate ∩ top-5 by exact| / 5."""
    n = len(exact)
    k = min(5, n - 1)
    overlaps = []
    for t in range(n):
        others = [s for s in range(n) if s != t]
        top = lambda m: set(sorted(others, key=lambda s: -m[t, s])[:k])  # noqa: E731
        overlaps.append(len(top(estimate) & top(exact)) / k)
    return float(np.mean(overlaps))


def run_sketch(report, cfg, bench) -> None:
    dims = (32, 128) if cfg.repeats == 1 else (64, 256, 1024)
    n_zoo_images = 32 if cfg.repeats == 1 else 250
    print("… sketch: zoo maps", flush=True)
    names, maps = zoo_saliency_maps(n_zoo_images)
    readers = [lambda s, e, m=m: m[s:e] for m in maps]
    exact = affinity_matrix(readers, n_zoo_images, names, progress=False)
    off = ~np.eye(len(names), dtype=bool)
    rows = []
    for dim in dims:
        sketcher = MapSketcher(dim=dim, seed=0)
        est = sketched_affinity([sketcher.sketch(r, n_zoo_images) for r in readers], names)
        err = np.abs(est - exact)[off]
        rows.append([dim, f"{err.max():.4f}", f"{err.mean():.4f}", f"{np.corrcoef(est[off], exact[off])[0, 1]:.4f}",
                     f"{top5_overlap(est, exact):.2f}"])

    print("… sketch: synthetic N=100", flush=True)
    n, n_img, feat = (10, cfg.n_images, 3 * cfg.map_size**2) if cfg.repeats == 1 else (100, cfg.n_images, 3 * cfg.map_size**2)
    synth = bench.SyntheticMaps(n_img, feat, seed=3)
    sreaders = [synth.reader(i) for i in range(n)]
    _, t_exact = bench.timed(lambda: affinity_matrix(sreaders, n_img, [f"m{i}" for i in range(n)], progress=False))
    speed_rows = []
    for dim in dims:
        sketcher = MapSketcher(dim=dim, seed=0)
        sketches, t_sketch = bench.timed(lambda: [sketcher.sketch(r, n_img) for r in sreaders])
        _, t_aff = bench.timed(lambda: sketched_affinity(sketches))
        speed_rows.append([dim, bench.fmt_s(t_sketch / n), bench.fmt_s(t_aff), f"{t_exact / t_aff:.0f}",
                           f"{feat / dim:.0f}×", bench.fmt_bytes(n_img * dim * 4)])

    report.add("## 6. Random-projection sketch vs exact affinity")
    report.add()
    report.add(f"Error on real maps: saliency maps of the {len(names)} zoo models on {n_zoo_images} rendered probe "
               "images (F = 3·64·64), sketched affinity against the exact one, off-diagonal entries; "
               "'top-5 overlap' = mean over targets of the share of the exact top-5 sources that the sketch also "
               "ranks top-5.")
    report.add()
    report.table(["k", "max abs error", "mean abs error", "correlation", "top-5 overlap"], rows)
    report.add(f"Cost on N = {n} synthetic models (Np = {n_img}, F = {feat}); exact streamed matrix: "
               f"{bench.fmt_s(t_exact)}. Sketching is done once per model (at embedding time, from its maps); the "
               "matrix from sketches then never touches the maps.")
    report.add()
    report.table(["k", "sketch per model", "matrix from sketches", "exact / sketched matrix", "smaller by",
                  "sketch per model (float32)"], speed_rows)
    report.add()


def run_gpu(report, cfg, bench, quick: bool) -> None:
    """20 ResNet-50-class models × 1000 probe images at 224², end to end, on CUDA."""
    from modelspace import ModelSpace, ProbeSet
    from modelspace.models import LoadedModel, ModelSpec
    from modelspace.models.transforms import InputTransform

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
        module = build().eval()
        models.append(LoadedModel(spec=spec, module=module.to(device), encoder="layer4",
                                  transform=InputTransform.from_spec(spec), key=f"bench-resnet50-{i:02d}"))
    rows, seconds_by = [], []
    for label, kw in (("fp32", {}), ("bf16 + channels-last", {"precision": "bf16", "channels_last": True})):
        if not cuda and label != "fp32":
            continue
        with tempfile.TemporaryDirectory() as store:
            space = ModelSpace(methods=list(LEVER_METHODS), store=store, device=device, batch_size=batch,
                               shard_size=256, workers=4 if cuda else 0, progress=False, **kw)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            space.fit(models, probe)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        seconds_by.append(seconds)
        rows.append([label, device, f"{n_models} × {n_img} × {size}²", bench.fmt_s(seconds),
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
