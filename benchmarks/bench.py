#!/usr/bin/env python
"""modelspace performance benchmark: attribution, Captum, affinity, insertion, levers, sketch, GPU.

    python benchmarks/bench.py                       # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench.py --quick               # smoke configuration (seconds), RESULTS-quick.md
    python benchmarks/bench.py --sections affinity insertion --out /tmp/r.md
    python benchmarks/bench.py --sections real --append   # in the vision environment, after a full run

Every figure is a ratio of two things measured side by side in this one run, on the same inputs
(see `harness`). Absolute times are printed for context only; they depend on the machine and its load.

Sections, one module each:
  attribution  `attribute(module, x, method, encoder=...)` over the floor: one plain forward to the
               encoder output R and one backward of mean(R) to the input, nothing else (attribution.py).
  captum       the same attributions with Captum's Saliency, InputXGradient and LRP (ε rule).
  affinity     `affinity_matrix` (streamed) against `affinity_naive` (per-pair loop) (affinity.py).
  insertion    `ModelSpace.add` of one model against recomputing the (N+1)² matrix (insertion.py).
  levers       channels-last, bf16 autocast and data-loading workers (levers.py).
  sketch       random-projection sketches against the exact affinity (sketch.py).
  gpu          20 ResNet-50-class models × 1000 probe images at 224² on CUDA (gpu.py).
  world        the world build's training levers: bf16, channels-last, the 32×32 decoder (world.py).
  real         timm ResNet-50, ConvNeXt-T and ViT-S/16 against Captum and Zennit; needs timm and Zennit
               (real_models.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

import affinity
import attribution
import gpu
import insertion
import levers
import real_models
import sketch
import world
from bench_models import hf_models, lever_models, taskonomy_models, zoo_models
from harness import FULL, HERE, QUICK, Report, appended_header, fmt_s, header, progress

SECTIONS = ("attribution", "captum", "affinity", "insertion", "levers", "sketch", "gpu", "world", "real")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration (seconds)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results (default benchmarks/RESULTS.md; RESULTS-quick.md with --quick)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--append", action="store_true",
                        help="add the sections to the end of the results file (a part run in another environment, "
                             "e.g. `--sections real` where timm and Zennit import) instead of writing a new one")
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
    out = args.out or HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sections = set(args.sections)
    if args.append and not out.is_file():
        parser.error(f"--append: no results file {out} to append to")
    report = Report(out, append=args.append)
    if args.append:
        appended_header(report)
    else:
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
        section("attribution/captum", lambda: attribution.run_attribution(
            report, cfg, sections, zoo_models(cfg, args.quick) + hf_models(cfg) + taskonomy_models(cfg, args.quick)))
    if "affinity" in sections:
        section("affinity", lambda: affinity.run_affinity(report, cfg))
    if "insertion" in sections:
        section("insertion", lambda: insertion.run_insertion(report, cfg))
    if "levers" in sections:
        section("levers", lambda: (levers.run_levers(report, cfg, lever_models(cfg, args.quick)),
                                   levers.run_workers(report, cfg)))
    if "sketch" in sections:
        section("sketch", lambda: sketch.run_sketch(report, cfg))
    if "gpu" in sections:
        section("gpu", lambda: gpu.run_gpu(report, cfg, args.quick))
    if "world" in sections:
        section("world", lambda: world.run_world(report, cfg))
    if "real" in sections:
        section("real", lambda: real_models.run_real(report, cfg))
    report.add(f"Total time of {'these sections' if args.append else 'the benchmark'}: "
               f"{fmt_s(time.perf_counter() - started)}.")
    report.write()
    progress(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
