#!/usr/bin/env python
"""modelspace performance benchmark: attribution, Captum, affinity, insertion.

    python benchmarks/bench.py                       # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench.py --quick               # smoke configuration (seconds), RESULTS-quick.md
    python benchmarks/bench.py --sections affinity insertion --out /tmp/r.md

Every figure is a ratio of two things measured side by side in this one run, on the same inputs:
the variants of a row are timed interleaved (round robin, after warm-up), so that a change of
machine load hits all of them alike, and the median over the repeats is kept. Absolute times
are printed for context only; they depend on the machine and its load.

Sections:
  attribution  `attribute(module, x, method, encoder=...)` over the floor: one plain forward to the
               encoder output R and one backward of mean(R) to the input, nothing else.
  captum       the same attributions with Captum's Saliency, InputXGradient and LRP (ε rule).
  affinity     `affinity_matrix` (streamed) against `affinity_naive` (per-pair loop): time and peak
               memory (tracemalloc, which sees numpy's allocations).
  insertion    `ModelSpace.add` of one model to a space of N models whose maps and affinities are
               in the store, against recomputing the (N+1)² matrix.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import hashlib
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import levers  # noqa: E402  (benchmarks/levers.py: sections 5-7)
import modelspace
from modelspace.similarity import affinity_matrix, affinity_naive, affinity_row
from modelspace.attribution import DEFAULT_METHODS, attribute
from modelspace.models.encoder import EncoderTap, first_tensor
from modelspace.models.sources import hf_default_encoder

HERE = Path(__file__).resolve().parent
SECTIONS = ("attribution", "captum", "affinity", "insertion", "levers", "sketch", "gpu")
METHODS = DEFAULT_METHODS
TARGET_FLOOR = {"saliency": 1.15, "gradient_x_input": 1.15, "lrp_epsilon": 1.5}
TARGET_CAPTUM = 1.0
LRP_EPSILON = 1e-6  # modelspace's default ε, given to Captum's EpsilonRule too
GIB = 2**30


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Config:
    repeats: int            # timed repeats per variant (median kept), after `warmup` calls
    warmup: int
    zoo_batch: int          # batch of the built-in zoo's models (their own input sizes, 48-80 px)
    hf_batch: int           # batch of the Hugging Face ResNet / ViT models
    hf_size: int            # their input size
    n_images: int           # Np, probe images per model (affinity, insertion)
    map_size: int           # S: maps are 3 × S × S (F = 3·S²)
    affinity_ns: tuple      # N for the streamed matrix
    naive_max: int          # the naive loop is run whole up to this N, estimated beyond
    naive_subset: int       # models of the subset the estimate is timed on
    matrix_repeats: int     # repeats of the streamed matrix for N <= 100
    insertion_ns: tuple     # N already in the space before one model is added
    min_sample: float       # attribution: a timed sample is the mean of as many calls as fill this (s)


FULL = Config(repeats=7, warmup=1, zoo_batch=16, hf_batch=8, hf_size=224, n_images=1000, map_size=64,
              affinity_ns=(20, 100, 500), naive_max=20, naive_subset=8, matrix_repeats=3,
              insertion_ns=(10, 20, 50, 100), min_sample=0.2)
QUICK = Config(repeats=1, warmup=1, zoo_batch=2, hf_batch=1, hf_size=32, n_images=64, map_size=16,
               affinity_ns=(5, 10, 20), naive_max=5, naive_subset=3, matrix_repeats=1,
               insertion_ns=(3, 5, 10), min_sample=0.0)


# ------------------------------------------------------------------------------------ report


class Report:
    """Markdown lines, echoed to stdout as they come and written to `out` after each section."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lines: list[str] = []

    def add(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")
        self.add()

    def target(self, what: str, met: bool | None, detail: str) -> None:
        verdict = "n/a" if met is None else ("**met**" if met else "**missed**")
        self.add(f"- {what}: {verdict} ({detail})")

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(self.lines) + "\n")


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB"


def short(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat; None where there is none)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def header(report: Report, cfg: Config, args: argparse.Namespace, quick: bool) -> None:
    versions = [f"torch {torch.__version__}", f"numpy {np.__version__}", f"modelspace {modelspace.__version__}"]
    for name in ("transformers", "captum"):
        with contextlib.suppress(ImportError):
            versions.append(f"{name} {__import__(name).__version__}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    report.add("# modelspace benchmark results")
    report.add()
    if quick:
        report.add("> **Smoke configuration (`--quick`)**: tiny inputs, few repeats. The figures only show that "
                   "the script runs; do not read performance from them.")
        report.add()
    report.add(f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    report.add(f"- machine: {platform.platform()}, {platform.machine()}, "
               f"{platform.processor() or 'cpu n/a'}; {os.cpu_count()} CPUs; "
               f"torch threads {torch.get_num_threads()}; load average at start {load}")
    report.add(f"- python {platform.python_version()}; " + "; ".join(versions))
    report.add(f"- command: `python benchmarks/bench.py {shlex.join(sys.argv[1:])}`".replace("bench.py `", "bench.py`"))
    report.add(f"- configuration: {cfg}")
    busy = cpu_busy()
    if busy is not None and busy > 0.2:
        report.add(f"- ⚠ **the machine was not idle at the start** ({busy:.0%} of the CPUs busy with other work): with "
                   "other work on the CPUs, torch's threads wait for each other and single calls slow down many "
                   "times over; rows marked ⚠ are unreliable, rerun on an idle machine.")
    report.add("- method: each ratio compares variants timed interleaved (round robin) in this run on the same "
               "inputs, median of the repeats after warm-up; absolute times are for context only.")
    report.add()


# ------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def traced(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run `fn` once under tracemalloc: (result, seconds, peak bytes allocated during the call)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out, seconds = timed(fn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, seconds, peak


class Timings:
    """Per-round samples of interleaved variants: medians, and ratios paired within each round."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def __contains__(self, name: str) -> bool:
        return name in self.samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratios(self, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(self.samples[a], self.samples[b])]

    def ratio(self, a: str, b: str) -> float:
        """Median over rounds of a / b measured in the same round (robust to slow drifts of load)."""
        return statistics.median(self.ratios(a, b))

    def cell(self, a: str, b: str) -> str:
        """'ratio (time of a)', marked when the per-round ratios scatter by more than ±15 %."""
        r, rs = self.ratio(a, b), self.ratios(a, b)
        noisy = len(rs) > 1 and (max(rs) > 1.15 * r or min(rs) < r / 1.15)
        mark = f" ⚠ rounds {min(rs):.2f}–{max(rs):.2f}" if noisy else ""
        return f"{r:.2f} ({fmt_s(self.median(a))}{mark})"


def interleaved(variants: dict[str, Callable[[], Any]], warmup: int, repeats: int,
                min_sample: float = 0.0) -> Timings:
    """Time the variants in turns: `warmup` untimed calls each, then `repeats` rounds of one sample
    each. A sample is the mean of k calls, k chosen per variant so that a sample lasts at least
    `min_sample` seconds (fast calls are otherwise at the mercy of the clock and the scheduler)."""
    calls = {}
    for name, fn in variants.items():
        for _ in range(warmup):
            fn()
        calls[name] = 1 if min_sample <= 0 else max(1, math.ceil(min_sample / max(timed(fn)[1], 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            gc.collect()
            k = calls[name]
            start = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - start) / k)
    return Timings(samples)


# ------------------------------------------------------------------------------------ models


@dataclass
class BenchModel:
    """A model under test: the full module (what `attribute` gets), its encoder name, an input
    batch, and the plain input → R path without hooks (the floor, and Captum's model)."""

    name: str
    module: nn.Module
    encoder: str | None
    x: torch.Tensor
    path: nn.Module | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> str:
        return "×".join(str(s) for s in self.x.shape)


class EncoderPath(nn.Module):
    """Input → R through the model's leading top-level children, nothing else (no hooks).

    Each step's output is reduced to its first tensor (a Hugging Face encoder returns a ModelOutput).
    """

    def __init__(self, steps: list[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = first_tensor(step(x))
        return x


class MeanHead(nn.Module):
    """R → mean(R) per sample as a module with constant weights 1/D (Captum needs a module to put a
    rule on): a convolution covering the whole feature map for (C, H, W), a linear layer otherwise."""

    def __init__(self, r_shape: tuple[int, ...]) -> None:
        super().__init__()
        d = math.prod(r_shape)
        if len(r_shape) == 3:
            self.op = nn.Conv2d(r_shape[0], 1, tuple(r_shape[1:]), bias=False)
        else:
            self.op = nn.Linear(d, 1, bias=False)
        nn.init.constant_(self.op.weight, 1.0 / d)
        self.op.weight.requires_grad_(False)
        self.flatten_first = len(r_shape) != 3

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        if self.flatten_first:
            r = r.reshape(r.shape[0], -1)
        return self.op(r).reshape(r.shape[0], 1)


class CaptumModel(nn.Module):
    """x → mean(R): the scalar Captum attributes, one per sample (target 0)."""

    def __init__(self, path: nn.Module, r_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.path = path
        self.head = MeanHead(r_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.path(x))


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def leading_steps(module: nn.Module, parts: list[str]) -> list[nn.Module] | None:
    """The children of `module` before the one named parts[0], then that one (or, for a dotted
    name, the leading steps inside it): what a sequential forward runs up to the encoder."""
    steps: list[nn.Module] = []
    for name, child in module.named_children():
        if name == parts[0]:
            if len(parts) == 1:
                return steps + [child]
            inner = leading_steps(child, parts[1:])
            return None if inner is None else steps + inner
        steps.append(child)
    return None


def encoder_path(model: BenchModel) -> None:
    """Set `model.path` to the plain input → R path (the model's leading modules, run one after the
    other), if it computes exactly the R that `EncoderTap` captures (checked on the batch); else
    leave it None and say why."""
    if model.encoder is None:
        model.path = model.module
        return
    steps = leading_steps(model.module, model.encoder.split("."))
    if steps is None:
        model.notes.append(f"no module {model.encoder!r}: floor and Captum skipped")
        return
    path = EncoderPath(steps)
    with torch.no_grad():
        want = EncoderTap(model.module, model.encoder, model.name)(model.x)
        try:
            got = path(model.x)
        except Exception as exc:
            got = exc
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
            not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
        model.notes.append("running the leading modules in order does not reproduce R: floor and Captum skipped")
        return
    model.path = path


def zoo_models(cfg: Config, quick: bool) -> list[BenchModel]:
    """3-4 models of the built-in zoo (one per architecture), or random-weight ones of the same
    architectures when the trained zoo is not there yet."""
    wanted = ["depth_z", "depth_z@vgg48", "depth_z@resnet80", "depth_z@mobilenet64"]
    out: list[BenchModel] = []
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(cfg.zoo_batch, 3, 64, 64, generator=gen)  # probe images in [0, 1], as T_i gets them
    try:
        from modelspace.models import load_model, load_zoo
        from modelspace.world.build import ZOO_DIR

        specs = {s.name: s for s in load_zoo(ZOO_DIR / "zoo.toml")}
        for name in wanted:
            spec = specs.get(name)
            if spec is None or not Path(spec.ref).is_file():
                continue
            loaded = load_model(spec)
            x = loaded.transform(probe)
            out.append(BenchModel(f"zoo:{name}", loaded.module, loaded.encoder, x,
                                  notes=["trained zoo weights"]))
    except Exception as exc:  # the zoo is being built, or not at all: fall back below
        print(f"(zoo not loadable: {short(exc)}; using random-weight zoo architectures)", flush=True)
        out = []
    if len(out) < 3:
        from modelspace.world import nets

        out = []
        torch.manual_seed(0)
        for arch, size in (("tasknet", 64), ("vgg", 48), ("resnet", 80), ("mobilenet", 64)):
            module = freeze(nets.build(arch, out_channels=1))
            x = torch.nn.functional.interpolate(probe, size=(size, size), mode="bilinear", align_corners=False)
            out.append(BenchModel(f"{arch} (random weights)", module, nets.ENCODERS[arch], (x - 0.5) / 0.25,
                                  notes=["zoo weights not available: random weights, same architecture"]))
    return out


def hf_models(cfg: Config) -> list[BenchModel]:
    """ResNet-18/50- and ViT-S-sized Hugging Face models with random weights."""
    try:
        from transformers import ResNetConfig, ResNetModel, ViTConfig, ViTModel
    except ImportError as exc:
        print(f"(transformers not importable: {exc}; Hugging Face models skipped)", flush=True)
        return []
    size, b = cfg.hf_size, cfg.hf_batch
    x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    models = []
    resnets = {
        "hf ResNet-18": dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
        "hf ResNet-50": dict(hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck"),
    }
    for name, kw in resnets.items():
        module = freeze(ResNetModel(ResNetConfig(embedding_size=64, hidden_act="relu", **kw)))
        models.append(BenchModel(name, module, "encoder", x.clone(), notes=["random weights"]))
    vit = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                    image_size=size, patch_size=16)
    module = freeze(ViTModel(vit, add_pooling_layer=False))
    # modelspace's own default for a transformers model: `encoder` (4.x), else the last block (5.x).
    encoder = hf_default_encoder(module)
    models.append(BenchModel("hf ViT-S/16", module, encoder, x.clone(),
                             notes=[f"random weights; encoder {encoder!r} (modelspace's default for this model)"]))
    return models


# ------------------------------------------------------------------------------------ sections 1 + 2


def floor_fn(model: BenchModel) -> Callable[[], torch.Tensor]:
    """One forward to R and one backward of mean(R) (summed over the batch) to the input."""
    path, x = model.path, model.x

    def run() -> torch.Tensor:
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            r = path(xx)
            (g,) = torch.autograd.grad(r.mean() * r.shape[0], xx)
        return g

    return run


def ours_fn(model: BenchModel, method: str) -> Callable[[], torch.Tensor]:
    return lambda: attribute(model.module, model.x, method, encoder=model.encoder, model_name=model.name)


def captum_fns(model: BenchModel, methods: tuple[str, ...]) -> tuple[dict[str, Callable], dict[str, str]]:
    """Captum callables per method, and a note per method (why it is missing, or what was adjusted)."""
    from captum.attr import LRP, InputXGradient, Saliency
    from captum.attr._utils.lrp_rules import EpsilonRule, IdentityRule

    with torch.no_grad():
        r_shape = tuple(model.path(model.x[:1]).shape[1:])
    x = model.x
    fns: dict[str, Callable] = {}
    notes: dict[str, str] = {}
    wrapped = CaptumModel(model.path, r_shape).eval()
    if "saliency" in methods:
        sal = Saliency(wrapped)
        fns["saliency"] = lambda: sal.attribute(x, target=0, abs=True)
    if "gradient_x_input" in methods:
        ixg = InputXGradient(wrapped)
        fns["gradient_x_input"] = lambda: ixg.attribute(x, target=0)
    if "lrp_epsilon" not in methods:
        return fns, notes

    def set_rules(net: CaptumModel, identity_rule: bool) -> None:
        # Captum deletes every `rule` attribute at the end of each call: they are set before each call.
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d,
                              nn.AdaptiveAvgPool2d)):
                m.rule = EpsilonRule(epsilon=LRP_EPSILON)
            elif identity_rule and isinstance(m, nn.Identity):
                m.rule = IdentityRule()
        net.head.op.rule = EpsilonRule(epsilon=0.0)  # relevance at R starts from R_k / D, as ours

    adjustments = []
    identity_rule = no_inplace = False
    for _ in range(3):
        # A fresh copy per attempt: Captum attaches rules and hooks to the modules it is given, and a
        # refused call leaves them behind.
        net = CaptumModel(copy.deepcopy(model.path), r_shape).eval()
        if no_inplace:
            for m in net.modules():
                if isinstance(m, nn.ReLU):
                    m.inplace = False
        lrp = LRP(net)
        try:
            set_rules(net, identity_rule)
            lrp.attribute(x[:1], target=0)
        except Exception as exc:  # record Captum's refusal, then retry once per known cause
            msg = f"{type(exc).__name__}: {exc}"
            if "Identity" in msg and not identity_rule:
                identity_rule = True
                adjustments.append(f"default refused ({short(msg, 80)}); retried with Captum's IdentityRule "
                                   "on nn.Identity")
                continue
            if "inplace" in msg.lower() and not no_inplace:
                no_inplace = True
                adjustments.append(f"default refused ({short(msg, 80)}); retried with ReLU(inplace=False)")
                continue
            notes["lrp_epsilon"] = "n/a (Captum refused: " + short(msg, 140) + ")" + (
                "; " + "; ".join(adjustments) if adjustments else "")
            return fns, notes

        def run_lrp(net: CaptumModel = net, lrp: LRP = lrp, identity_rule: bool = identity_rule) -> torch.Tensor:
            set_rules(net, identity_rule)
            return lrp.attribute(x, target=0)

        fns["lrp_epsilon"] = run_lrp
        if adjustments:
            notes["lrp_epsilon"] = "; ".join(adjustments)
        return fns, notes
    notes["lrp_epsilon"] = "n/a (Captum refused after retries: " + "; ".join(adjustments) + ")"
    return fns, notes


class _CountSums(TorchFunctionMode):
    """Counts sums of two activations (tensors that require grad) run as torch functions."""

    OPS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__iadd__,
           torch.Tensor.__radd__}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.OPS and sum(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:2]) == 2:
            self.count += 1
        return func(*args, **kwargs)


def functional_sums(path: nn.Module, x: torch.Tensor) -> int:
    """How many sums of two activations the path runs as functions, not modules (residual
    additions): Captum's LRP cannot put a rule on them and passes relevance through as a gradient."""
    counter = _CountSums()
    with torch.enable_grad(), counter:
        path(x[:1].detach().requires_grad_(True))
    return counter.count


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def run_attribution(report: Report, cfg: Config, sections: set[str], models: list[BenchModel]) -> None:
    want_floor, want_captum = "attribution" in sections, "captum" in sections
    floor_rows, captum_rows = [], []
    floor_ratios: dict[str, list[tuple[str, float]]] = {m: [] for m in METHODS}
    captum_ratios: dict[str, list[tuple[str, float]]] = {m: [] for m in METHODS}

    for model in models:
        print(f"… {model.name} ({model.shape})", flush=True)
        t_model = time.perf_counter()
        encoder_path(model)
        variants: dict[str, Callable] = {}
        refused: dict[str, str] = {}
        outputs: dict[str, torch.Tensor] = {}
        for method in METHODS:
            fn = ours_fn(model, method)
            try:
                outputs[method] = fn()
                variants[f"ours:{method}"] = fn
            except Exception as exc:
                refused[method] = f"n/a (refused: {short(f'{type(exc).__name__}: {exc}', 150)})"
        if model.path is not None and want_floor:
            variants["floor"] = floor_fn(model)
        cap_notes: dict[str, str] = {}
        agreement: dict[str, str] = {}
        if model.path is not None and want_captum:
            try:
                cap, cap_notes = captum_fns(model, METHODS)
            except ImportError as exc:
                cap, cap_notes = {}, {m: f"n/a (captum not importable: {exc})" for m in METHODS}
            for method, fn in cap.items():
                variants[f"captum:{method}"] = fn
                if method in outputs:
                    agreement[method] = f"{rel_diff(outputs[method], fn()):.1e}"
        outputs.clear()
        # Floor first in each round, then ours, then Captum.
        order = sorted(variants, key=lambda k: (not k.startswith("floor"), k.startswith("captum"), k))
        # Fast calls scatter most under load: they get three times the rounds (they cost little).
        fast = timed(variants[order[0]])[1] < 0.05
        med = interleaved({k: variants[k] for k in order}, cfg.warmup, cfg.repeats * (3 if fast else 1), cfg.min_sample)
        print(f"  {fmt_s(time.perf_counter() - t_model)}: " +
              ", ".join(f"{k} {fmt_s(med.median(k))}" for k in order), flush=True)

        if want_floor:
            row = [model.name, model.shape]
            if "floor" not in med:
                floor_rows.append(row + ["n/a"] * 4 + ["; ".join(model.notes)])
            else:
                row.append(fmt_s(med.median("floor")))
                for method in METHODS:
                    if f"ours:{method}" in med:
                        floor_ratios[method].append((model.name, med.ratio(f"ours:{method}", "floor")))
                        row.append(med.cell(f"ours:{method}", "floor"))
                    else:
                        row.append(refused[method])
                floor_rows.append(row + ["; ".join(model.notes)])
        if want_captum:
            row = [model.name, model.shape]
            notes = list(model.notes)
            for method in METHODS:
                key = f"captum:{method}"
                if method in refused and key in med:
                    row.append(f"ours {refused[method]}; Captum {fmt_s(med.median(key))}")
                elif method in refused:
                    row.append(f"ours {refused[method]}; Captum {cap_notes.get(method, 'n/a')}")
                elif key in med:
                    captum_ratios[method].append((model.name, med.ratio(f"ours:{method}", key)))
                    row.append(med.cell(f"ours:{method}", key)[:-1] + f" / {fmt_s(med.median(key))}; "
                               f"max rel. diff {agreement.get(method, '?')})")
                else:
                    row.append(cap_notes.get(method, "n/a (no encoder path)"))
                if method in cap_notes and key in med:
                    notes.append(f"Captum LRP: {cap_notes[method]}")
            sums = functional_sums(model.path, model.x) if model.path is not None and "lrp_epsilon" not in refused else 0
            if sums:
                notes.append(f"{sums} residual sums are functional (`+` / `+=`), which Captum's LRP cannot see: "
                             "it would pass relevance through them as a gradient where ours applies the ε rule, "
                             "so the ε-LRP maps differ")
            captum_rows.append(row + ["; ".join(notes)])

    if want_floor:
        report.add("## 1. Attribution vs the floor")
        report.add()
        report.add("Ratio = `attribute(module, x, method, encoder=...)` / floor (one plain forward to R through the "
                   "model's leading modules, no hooks, and `torch.autograd.grad(r.mean() * B, x)`), the median over "
                   f"{cfg.repeats} rounds ({3 * cfg.repeats} for models whose floor is under 50 ms) of the two times measured in the same round (a time is the mean of as many "
                   f"calls as fill {cfg.min_sample} s, one call for the larger models); in brackets the median time of ours, and "
                   "⚠ with the range of the per-round ratios where they scatter by more than ±15 % (load on the "
                   "machine). Input = batch × channels × height × width.")
        report.add()
        report.table(["model", "input", "floor", "saliency", "gradient×input", "ε-LRP", "notes"], floor_rows)
        for method in METHODS:
            worst_against(report, f"{method} ≤ {TARGET_FLOOR[method]}× floor", floor_ratios[method],
                          TARGET_FLOOR[method], "no model measured")
        report.add()
    if want_captum:
        report.add("## 2. Ours vs Captum")
        report.add()
        report.add("Ratio = ours / Captum on the same model and batch (Captum sees `x → mean(R)` as the encoder path "
                   "plus a constant 1/D convolution or linear head; for LRP the ε rule with the same ε on every "
                   "layer and ε = 0 on the head), paired per round as in section 1. In brackets: ours / Captum "
                   "median times and the largest difference of the maps relative to Captum's largest value.")
        report.add()
        report.table(["model", "input", "saliency", "gradient×input", "ε-LRP", "notes"], captum_rows)
        for method in METHODS:
            worst_against(report, f"{method} ≤ {TARGET_CAPTUM}× Captum", captum_ratios[method], TARGET_CAPTUM,
                          "no model with both")
        report.add()


def worst_against(report: Report, what: str, got: list[tuple[str, float]], target: float, if_none: str) -> None:
    """One target line: met when the worst (model, ratio) of `got` is within `target`."""
    if not got:
        report.target(what, None, if_none)
        return
    worst = max(got, key=lambda t: t[1])
    report.target(what, worst[1] <= target,
                  f"worst {worst[1]:.2f} on {worst[0]}; all: " + ", ".join(f"{r:.2f}" for _, r in got))


# ------------------------------------------------------------------------------------ section 3


class SyntheticMaps:
    """Normalised float16 maps of many models without holding them all: model i's row k is a row
    of one shared pool (a per-model random choice of rows), read as float32 like `MapStore.read`."""

    def __init__(self, n_images: int, n_features: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_images, self.n_features = n_images, n_features
        pool = rng.random((n_images + 251, n_features), dtype=np.float32) - 0.25
        pool /= np.linalg.norm(pool, axis=1, keepdims=True)
        self.pool = pool.astype(np.float16)
        self.seed = seed

    def rows(self, model: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, model))
        return rng.permutation(len(self.pool))[: self.n_images]

    def reader(self, model: int) -> Callable[[int, int], np.ndarray]:
        idx = self.rows(model)
        return lambda start, stop: self.pool[idx[start:stop]].astype(np.float32)

    def array(self, model: int) -> np.ndarray:
        return self.pool[self.rows(model)]


def run_affinity(report: Report, cfg: Config) -> None:
    n_img, feat = cfg.n_images, 3 * cfg.map_size**2
    maps = SyntheticMaps(n_img, feat)
    rows, streamed_at = [], {}
    for n in cfg.affinity_ns:
        print(f"… affinity N={n}", flush=True)
        readers = [maps.reader(i) for i in range(n)]
        names = [f"m{i}" for i in range(n)]
        reps = cfg.matrix_repeats if n <= 100 else 1
        times, peak, streamed = [], 0, None
        for _ in range(reps):
            streamed, seconds, p = traced(lambda: affinity_matrix(readers, n_img, names, progress=False))
            times.append(seconds)
            peak = max(peak, p)
        t_stream = statistics.median(times)
        streamed_at[n] = (t_stream, peak)

        if n <= cfg.naive_max:
            inputs = [maps.array(i) for i in range(n)]
            naive, t_naive, p_naive = traced(lambda: affinity_naive(inputs))
            del inputs
            check = f"max abs diff {np.abs(naive - streamed).max():.1e}"
            how = f"measured ({n}² pairs)"
        else:
            k = cfg.naive_subset
            inputs = [maps.array(i) for i in range(k)]
            naive, t_sub, p_sub = traced(lambda: affinity_naive(inputs))
            del inputs
            t_naive, p_naive = t_sub * (n / k) ** 2, p_sub * n / k
            check = f"subset: max abs diff {np.abs(naive - streamed[:k, :k]).max():.1e}"
            how = f"**estimated** from {k} models ({k}² pairs, {fmt_s(t_sub)}, {fmt_bytes(p_sub)}): time × (N/{k})², memory × N/{k}"
        del streamed, naive
        rows.append([n, f"{fmt_s(t_stream)} (median of {reps})", fmt_bytes(streamed_at[n][1]),
                     fmt_s(t_naive), fmt_bytes(p_naive), f"{t_naive / t_stream:.1f}", how, check])

    report.add("## 3. Affinity matrix: streamed vs naive")
    report.add()
    report.add(f"Synthetic L2-normalised float16 maps, Np = {n_img} images, F = 3·{cfg.map_size}·{cfg.map_size} = "
               f"{feat}; each reader returns float32 rows like `MapStore.read`. Peak memory = tracemalloc peak of "
               "the call (numpy's allocations included; the maps given to the naive loop and the shared pool the "
               f"readers copy from are allocated before and not counted). Input data per model: "
               f"{fmt_bytes(n_img * feat * 2)} as float16.")
    report.add()
    report.table(["N", "streamed time", "streamed peak", "naive time", "naive peak", "naive / streamed",
                  "naive figures", "agreement"], rows)
    if 100 in streamed_at:
        t, p = streamed_at[100]
        report.target("N=100 streamed ≤ 10 s", t <= 10, fmt_s(t))
        report.target("N=100 streamed ≤ 2 GiB", p <= 2 * GIB, fmt_bytes(p))
    else:
        report.target("N=100 streamed ≤ 10 s and ≤ 2 GiB", None, "N=100 not run in this configuration")
    report.add()


# ------------------------------------------------------------------------------------ section 4


class ShardLoads:
    """Counts the bytes `MapStore` loads from shard files (instrumentation of one store object)."""

    def __init__(self, store: Any) -> None:
        self.bytes = 0
        original = store._load_shard

        def counting(rel: str, checksum: str, shape: tuple[int, int]) -> np.ndarray:
            data = original(rel, checksum, shape)
            if not isinstance(data, np.memmap):  # read whole and hashed; a verified file is mapped instead
                self.bytes += data.nbytes
            return data

        store._load_shard = counting

    def during(self, fn: Callable[[], Any]) -> tuple[Any, float, int]:
        """(result, seconds, shard bytes loaded) of one call."""
        before = self.bytes
        out, seconds = timed(fn)
        return out, seconds, self.bytes - before


def run_insertion(report: Report, cfg: Config) -> None:
    from modelspace import ModelSpace, ProbeSet
    from modelspace.models import LoadedModel, ModelSpec
    from modelspace.models.transforms import InputTransform
    from modelspace.maps import EntryKey, MapStore, plan_units

    n_img, s = cfg.n_images, cfg.map_size
    feat = 3 * s * s
    maps = SyntheticMaps(n_img, feat, seed=1)
    probe = ProbeSet.from_array(np.random.default_rng(2).integers(0, 256, (n_img, 3, s, s), dtype=np.uint8))
    method, shard_size = "saliency", 256
    map_bytes = n_img * feat * 2  # one model's maps as stored (float16)

    def member(i: int, name: str) -> LoadedModel:
        spec = ModelSpec(name=name, source="python:torch.nn:Identity", input_size=s)
        key = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        return LoadedModel(spec=spec, module=nn.Identity(), encoder=None, transform=InputTransform.from_spec(spec),
                           key=key)

    n_old = max(cfg.insertion_ns)
    rows, adds, fulls, lookups = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="modelspace-bench-") as tmp:
        store = MapStore(tmp)
        loads = ShardLoads(store)
        old = [member(i, f"old{i}") for i in range(n_old)]
        new = {n: member(10_000 + n, f"new{n}") for n in cfg.insertion_ns}
        print(f"… writing {n_old + len(new)} models' maps to a temporary store", flush=True)
        sources = [(m, i) for i, m in enumerate(old)] + [(m, 10_000 + n) for n, m in new.items()]
        for m, i in sources:
            key = EntryKey(m.key, probe.hash, method, probe.size)
            store.register_model(m.key, m.name, m.spec.to_dict())
            data = maps.array(i).astype(np.float32)
            for unit in plan_units(key, m.name, n_img, shard_size):
                store.write(unit, data[unit.start:unit.stop])
        keys = {m.name: EntryKey(m.key, probe.hash, method, probe.size) for m, _ in sources}

        def reader(m: LoadedModel):
            return lambda a, b, k=keys[m.name]: store.read(k, a, b)

        # The old models' pairs are cached, as after an earlier fit (values from the same maps in memory).
        print("… caching the old models' affinities", flush=True)
        a = affinity_matrix([maps.reader(i) for i in range(n_old)], n_img, [m.name for m in old], progress=False)
        store.put_affinities((keys[old[i].name], keys[old[j].name], float(a[i, j]))
                             for i in range(n_old) for j in range(i + 1, n_old))

        for n in cfg.insertion_ns:
            print(f"… insertion N={n}", flush=True)
            space = ModelSpace(methods=[method], store=store, shard_size=shard_size, progress=False)
            space.fit(old[:n], probe)  # maps and pairs all cached: nothing is computed
            _, t_add, add_bytes = loads.during(lambda: space.add(new[n]))
            assert space.results_[method].affinity.shape == (n + 1, n + 1)
            everyone = [new[n], *old[:n]]
            names = [m.name for m in everyone]
            _, t_full, full_bytes = loads.during(
                lambda: affinity_matrix([reader(m) for m in everyone], n_img, names, progress=False))
            memory_readers = [maps.reader(10_000 + n)] + [maps.reader(i) for i in range(n)]
            med = interleaved({
                "row_mem": lambda: affinity_row(memory_readers[0], memory_readers[1:], n_img, names, progress=False),
                "full_mem": lambda: affinity_matrix(memory_readers, n_img, names, progress=False),
                # What add() spends on the pair cache: one query for every cached pair among the N+1 models.
                "lookups": lambda: store.affinities_among([keys[m.name] for m in everyone]),
            }, warmup=0, repeats=cfg.matrix_repeats if n <= 20 else 1)
            adds[n], fulls[n], lookups[n] = t_add, t_full, med.median("lookups")
            rows.append([n, fmt_s(t_add), fmt_s(t_full), f"**{t_full / t_add:.1f}**", f"{t_add / n * 1e3:.0f} ms",
                         fmt_s(med.median("row_mem")), fmt_s(med.median("full_mem")),
                         f"{med.median('full_mem') / med.median('row_mem'):.1f}", fmt_s(med.median("lookups")),
                         f"{add_bytes / ((n + 1) * map_bytes):.1f}× / {full_bytes / ((n + 1) * map_bytes):.1f}×"])
        store.close()

    def slope(d: dict[int, float]) -> float:
        xs, ys = np.log(list(d)), np.log(list(d.values()))
        return float(np.polyfit(xs, ys, 1)[0]) if len(d) >= 2 else float("nan")

    report.add("## 4. Adding one model vs recomputing the matrix")
    report.add()
    report.add(f"A `ModelSpace` (method saliency) over N models whose maps (synthetic, Np = {n_img}, F = {feat}, "
               f"float16 shards of {shard_size} images, {fmt_bytes(map_bytes)} per model) and pairwise affinities "
               "are already in a `MapStore`; `add()` of one more model whose maps are stored computes its row "
               "(and re-reads the cached pairs, builds the tree and rankings). Against it, recomputing: "
               "`affinity_matrix` over the same N+1 models read from the store. Both are timed once (a second "
               "add() would find its row cached). Beside them, the same row and matrix from maps held in memory "
               f"(median of {cfg.matrix_repeats} for N ≤ 20, else one run), the pair-cache query that add() makes, and the bytes read "
               "whole and checksummed from shard files per byte of maps (add() / recompute; a file already verified "
               "by this store object and unchanged since is memory-mapped and not hashed again; files written "
               "less than 2 s before are always hashed).")
    report.add()
    report.table(["N", "add()", "recompute (store)", "recompute / add", "add() / N", "row (memory)",
                  "matrix (memory)", "matrix / row (memory)", "pair-cache lookups", "shard bytes hashed / map bytes"],
                 rows)
    report.add(f"Empirical growth exponent (slope of log time on log N): add() {slope(adds):.2f}, "
               f"recompute {slope(fulls):.2f}, pair-cache lookups {slope(lookups):.2f} (1 = linear, 2 = quadratic).")
    report.add()


# ------------------------------------------------------------------------------------ sections 5-7


def lever_models(cfg: Config, quick: bool) -> list[BenchModel]:
    """Two zoo architectures and the Hugging Face ResNet-18 for the levers section."""
    zoo = [m for m in zoo_models(cfg, quick) if "resnet" in m.name or "mobilenet" in m.name]
    hf = [m for m in hf_models(cfg) if "ResNet-18" in m.name]
    return zoo + hf


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration (seconds)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results (default benchmarks/RESULTS.md; RESULTS-quick.md with --quick)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
    out = args.out or HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sections = set(args.sections)
    report = Report(out)
    header(report, cfg, args, args.quick)
    started = time.perf_counter()

    def section(name: str, run: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        run()
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
        report.add(f"_Section {name}: {fmt_s(time.perf_counter() - t0)}; load average after it {load} "
                   f"(more than {args.threads} means other work shared the CPUs)._")
        report.add()
        report.write()

    if sections & {"attribution", "captum"}:
        section("attribution/captum",
                lambda: run_attribution(report, cfg, sections, zoo_models(cfg, args.quick) + hf_models(cfg)))
    if "affinity" in sections:
        section("affinity", lambda: run_affinity(report, cfg))
    if "insertion" in sections:
        section("insertion", lambda: run_insertion(report, cfg))
    bench = sys.modules[__name__]
    if "levers" in sections:
        section("levers", lambda: (levers.run_levers(report, cfg, lever_models(cfg, args.quick), bench),
                                   levers.run_workers(report, cfg, bench)))
    if "sketch" in sections:
        section("sketch", lambda: levers.run_sketch(report, cfg, bench))
    if "gpu" in sections:
        section("gpu", lambda: levers.run_gpu(report, cfg, bench, args.quick))
    report.add(f"Total benchmark time: {fmt_s(time.perf_counter() - started)}.")
    report.write()
    print(f"\nwrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
