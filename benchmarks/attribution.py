"""Sections 1 and 2: `attribute()` over the floor (one plain forward to R and one backward of
mean(R)), and against Captum's Saliency, InputXGradient and LRP (ε rule)."""


import copy
import time
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


from bench_models import BenchModel, CaptumModel, encoder_path
from harness import Config, Report, fmt_s, interleaved, progress, short, timed
from modelspace.attribution import DEFAULT_METHODS, attribute

METHODS = DEFAULT_METHODS
TARGET_FLOOR = {"saliency": 1.15, "gradient_x_input": 1.15, "lrp_epsilon": 1.5}
TARGET_CAPTUM = 1.0
LRP_EPSILON = 1e-6  # modelspace's default ε, given to Captum's EpsilonRule too


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
        progress(f"… {model.name} ({model.shape})")
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
        progress(f"  {fmt_s(time.perf_counter() - t_model)}: " + ", ".join(f"{k} {fmt_s(med.median(k))}" for k in order))

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
