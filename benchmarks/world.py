"""Section 8: the world build's training levers. One Adam step of a world task model (a batch of
64×64 scenes) under bf16 autocast and channels-last against fp32 NCHW (ResTaskNet, the group-1
model), and a dense decoder predicting at 32×32 against 64×64 (ResNetSmall, which has both); then
the cost of rendering a scene against one image of a training step, which decides between more
scenes and more epochs."""

from __future__ import annotations

import time

import torch

from modelspace.world import nets, train
from modelspace.world.render import render_batch

from harness import fmt_s, interleaved, progress

VARIANTS = {  # name: (arch, predict_size, precision, channels_last)
    "ResTaskNet fp32 NCHW": ("restasknet", 32, "float32", False),
    "ResTaskNet bf16 autocast": ("restasknet", 32, "bfloat16", False),
    "ResTaskNet channels-last": ("restasknet", 32, "float32", True),
    "ResTaskNet bf16 + channels-last": ("restasknet", 32, "bfloat16", True),
    "ResNetSmall, decoder at 64×64": ("resnet", 64, "bfloat16", True),
    "ResNetSmall, decoder at 32×32": ("resnet", 32, "bfloat16", True),
}
TYPICAL_STEPS = 6000  # the build's models stopped after 3 000–10 000 steps (data/world/zoo/records)
BASELINES = {name: ("ResTaskNet fp32 NCHW" if arch == "restasknet" else "ResNetSmall, decoder at 64×64")
             for name, (arch, *_rest) in VARIANTS.items()}


def _step(arch: str, predict_size: int, precision: str, channels_last: bool, data: dict, batch: int):
    """A closure running one training step of a fresh depth_z model under these levers."""
    torch.manual_seed(0)
    model = nets.build(arch, out_channels=1, predict_size=predict_size)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = train.to_tensor(data["rgb"][:batch]).contiguous(memory_format=memory_format)
    y = train.task_target("depth_z", data, torch.arange(batch).numpy())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")

    def step() -> None:
        with autocast:
            out = model(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def run_world(report, cfg) -> None:
    batch = 4 if cfg.repeats == 1 else 32
    data = render_batch(batch, seed=1000)
    progress("… world training levers")
    variants = {name: _step(*levers, data, batch) for name, levers in VARIANTS.items()}
    timings = interleaved(variants, cfg.warmup, cfg.repeats, cfg.min_sample)
    rows = [[name, BASELINES[name], timings.cell(name, BASELINES[name])] for name in VARIANTS]
    n_render = 8 if cfg.repeats == 1 else 64
    start = time.perf_counter()
    render_batch(n_render, seed=77)
    per_scene = (time.perf_counter() - start) / n_render
    per_image = timings.median("ResTaskNet bf16 + channels-last") / batch

    report.add("## 8. World build: training levers (CPU here)")
    report.add()
    report.add(f"One Adam step of a depth_z model on {batch} scenes at 64×64, each variant's time / its "
               "baseline's, interleaved as in section 1. The build trains ResTaskNet with bf16 autocast and "
               "channels-last, and group 2's dense decoders at 32×32.")
    report.add()
    report.table(["variant", "baseline", "time / baseline (time)"], rows)
    training = TYPICAL_STEPS * 32 * per_image
    rendering = 10_000 * per_scene
    report.add(f"Rendering one scene takes {fmt_s(per_scene)}, one image of a training step (the build's "
               f"levers) {fmt_s(per_image)}. A typical model trains {TYPICAL_STEPS} steps of 32 images "
               f"({fmt_s(training)}); rendering its 10 000 scenes once costs {fmt_s(rendering)}, "
               f"{100 * rendering / training:.0f} % of that, and four times the scenes {100 * 4 * rendering / training:.0f} %.")
    report.add()
