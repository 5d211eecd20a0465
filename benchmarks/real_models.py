"""Section 9: real timm models at 224² (random weights): ResNet-50, ConvNeXt-T and ViT-S/16, each
loaded through modelspace's `timm:` source (its default encoder and R), timed for our three methods,
Captum's Saliency / InputXGradient / LRP and Zennit's ε-LRP, every one as a ratio to the floor (one
plain forward to R and one backward of mean(R)). Needs timm, Captum and Zennit: run it in the
vision environment of DEVELOPERS.md."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from attribution import LRP_EPSILON, captum_fns, floor_fn, ours_fn, rel_diff
from bench_models import BenchModel, CaptumModel
from harness import Config, Report, fmt_s, interleaved, progress, short
from modelspace.attribution import DEFAULT_METHODS

MODELS = {"ResNet-50": "resnet50", "ConvNeXt-T": "convnext_tiny", "ViT-S/16": "vit_small_patch16_224"}


class Encoder(nn.Module):
    """x → R as modelspace computes it (the loaded model's encoder tap), as a module for Captum
    and Zennit; the modules after the encoder never run."""

    def __init__(self, loaded) -> None:
        super().__init__()
        self.model = loaded.module
        self.tap = loaded.tap()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tap(x)


def timm_models(cfg: Config) -> list[BenchModel]:
    from modelspace.models import ModelSpec, load_model

    size, batch = cfg.hf_size, cfg.hf_batch
    probe = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    out = []
    for label, name in MODELS.items():
        kwargs = {"img_size": size} if name.startswith("vit") and size != 224 else {}
        torch.manual_seed(0)
        loaded = load_model(ModelSpec(name=label, source=f"timm:{name}", pretrained=False, input_size=size,
                                      kwargs=kwargs))
        model = BenchModel(f"timm {label}", loaded.module, loaded.encoder, loaded.transform(probe),
                           notes=[f"random weights; encoder {loaded.encoder!r} (modelspace's default)"])
        model.path = Encoder(loaded).eval()
        out.append(model)
    return out


def zennit_fn(model: BenchModel) -> tuple[Callable[[], torch.Tensor] | None, str]:
    """Zennit's ε rule on every convolution and linear layer (activations pass relevance on,
    average pools spread it evenly) over the same x → mean(R). The output is its own relevance, so
    through the 1/D head relevance at R starts from R_k / D · z / (z + ε) ≈ R_k / D, as ours."""
    try:
        from zennit.attribution import Gradient
        from zennit.composites import LayerMapComposite
        from zennit.rules import Epsilon, Norm, Pass
        from zennit.types import Activation, AvgPool, Convolution, Linear
    except ImportError as exc:
        return None, f"n/a (zennit not importable: {short(exc, 80)})"
    with torch.no_grad():
        r_shape = tuple(model.path(model.x[:1]).shape[1:])
    net = CaptumModel(model.path, r_shape).eval()
    composite = LayerMapComposite([(Activation, Pass()), (Convolution, Epsilon(LRP_EPSILON)),
                                   (Linear, Epsilon(LRP_EPSILON)), (AvgPool, Norm())])

    def run() -> torch.Tensor:
        with Gradient(model=net, composite=composite) as attributor:
            # The output itself as its relevance: through the head's ε rule that is R_k / D at R.
            _, relevance = attributor(model.x, lambda out: out)
        return relevance

    note = ("Zennit has no rule for LayerNorm, attention or the products inside them: there its relevance "
            "passes as the gradient" if any(isinstance(m, nn.LayerNorm) for m in model.module.modules()) else "")
    return run, note


def run_real(report: Report, cfg: Config) -> None:
    try:
        models = timm_models(cfg)
    except Exception as exc:  # timm missing: the section says so instead of failing the run
        report.add("## 9. Real timm models: ours, Captum and Zennit against the floor")
        report.add()
        report.add(f"n/a: {short(f'{type(exc).__name__}: {exc}', 200)} (run in the vision environment, DEVELOPERS.md)")
        report.add()
        return
    rows = []
    for model in models:
        progress(f"… {model.name} ({model.shape})")
        t_model = time.perf_counter()
        variants: dict[str, Callable] = {"floor": floor_fn(model)}
        outputs: dict[str, torch.Tensor] = {}
        cells: dict[str, str] = {}
        for method in DEFAULT_METHODS:
            fn = ours_fn(model, method)
            try:
                outputs[method] = fn()
                variants[f"ours:{method}"] = fn
            except Exception as exc:
                cells[f"ours:{method}"] = f"n/a ({short(f'{type(exc).__name__}: {exc}', 100)})"
        captum, captum_notes = captum_fns(model, DEFAULT_METHODS)
        for method, fn in captum.items():
            variants[f"captum:{method}"] = fn
        for method, note in captum_notes.items():
            if method not in captum:
                cells[f"captum:{method}"] = note
        zennit, zennit_note = zennit_fn(model)
        if zennit is not None:
            variants["zennit:lrp_epsilon"] = zennit
        else:
            cells["zennit:lrp_epsilon"] = zennit_note
        agreement = []
        if "lrp_epsilon" in outputs:
            for other in ("captum", "zennit"):
                if f"{other}:lrp_epsilon" in variants:
                    agreement.append(f"ε-LRP max rel. diff vs {other}: "
                                     f"{rel_diff(outputs['lrp_epsilon'], variants[f'{other}:lrp_epsilon']()):.1e}")
        outputs.clear()
        med = interleaved(variants, cfg.warmup, cfg.repeats, cfg.min_sample)
        progress(f"  {fmt_s(time.perf_counter() - t_model)}: " + ", ".join(f"{k} {fmt_s(med.median(k))}" for k in med.samples))
        row = [model.name, model.shape, fmt_s(med.median("floor"))]
        for key in [f"ours:{m}" for m in DEFAULT_METHODS] + [f"captum:{m}" for m in DEFAULT_METHODS] + ["zennit:lrp_epsilon"]:
            row.append(med.cell(key, "floor") if key in med else cells.get(key, "n/a"))
        notes = model.notes + agreement + ([zennit_note] if zennit_note and zennit is not None else [])
        rows.append(row + ["; ".join(notes)])
    report.add("## 9. Real timm models: ours, Captum and Zennit against the floor")
    report.add()
    report.add("Each cell: time / floor (one forward to R and one backward of mean(R)) on the same batch, paired per "
               f"round as in section 1 (median of {cfg.repeats} rounds), with the median time in brackets. Models come "
               "from modelspace's `timm:` source with random weights, so R is modelspace's default encoder output. "
               "Captum and Zennit see x → R → a constant 1/D head, with the ε rule (same ε) on convolutions and "
               "linear layers.")
    report.add()
    report.table(["model", "input", "floor", "saliency", "gradient×input", "ε-LRP", "Captum saliency",
                  "Captum ×input", "Captum LRP", "Zennit ε-LRP", "notes"], rows)
    report.add("Ours can come out at or below the floor because it turns the parameters' `requires_grad` off while "
               "attributing, so autograd keeps less than for the floor's plain call. The ε-LRP differences against "
               "Zennit compare two rule sets, not one rule computed twice: this composite has rules for "
               "convolutions, linear layers and average pools only, so batch norm, max pool, layer norm and "
               "attention pass relevance as the gradient in Zennit, while ours applies its norm, pooling and "
               "attention rules. On plain convolutional stacks, where the rule sets coincide, the two agree "
               "(`tests/vision/attribution/test_lrp_references.py`).")
    report.add()
