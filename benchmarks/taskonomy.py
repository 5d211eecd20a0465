"""The seed paper's workload, timed: 20 Taskonomy encoders × 1000 probe images at 256² × its three methods.

    python benchmarks/taskonomy.py                          # CPU: measured on 10 and 40 images, extrapolated
    python benchmarks/taskonomy.py --images 1000 --device cuda   # a GPU: the whole workload, measured
    python benchmarks/taskonomy.py --quick                  # smoke configuration (seconds; figures mean nothing)
    python benchmarks/taskonomy.py --append benchmarks/RESULTS.md   # also as RESULTS.md's section 12

Song et al. (NeurIPS 2019) report "about 20 GPU hours" on one Quadro P5000 for the attribution maps of 20
Taskonomy models over their probe set. Here the same workload runs end to end through `ModelSpace.fit`:
the shipped zoo (``modelspace run taskonomy``) with random weights (``pretrained = false``: the cost does
not depend on the weights), each encoder at its 256² input with the paper's input convention, the maps
of saliency, gradient×input and ε-LRP stored at probe size 256 (float16), the affinities, trees and
rankings of the three; no baseline. Probe images are random (their content does not change the cost).

Extrapolation: with the models fixed, every stage is linear in the number of probe images N (each
model's forward and backward passes, the store's writes, the streamed affinities over image pairs of
models), plus a fixed cost (loading the models, hashing their weights, starting). After an untimed fit
of one model on two images (imports, torch's first calls), the script times the whole fit at two N (``--images N1 N2``, each in a fresh store), draws the straight line T(N) = a + b·N
through the two, and evaluates it at the paper's N (``--target``, 1000). The result is that time, its
ratio to the paper's 20 hours, and the store the full run would write. With one N equal to the target
nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from harness import appended_section, fmt_bytes, fmt_s

PAPER_SECONDS = 20 * 3600  # "about 20 GPU hours" (one Quadro P5000)
METHODS = ("saliency", "gradient_x_input", "lrp_epsilon")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fit_once(specs, n_images: int, probe_size: int, args) -> tuple[float, int, list[str]]:
    """(seconds, store bytes, failed models) of one `ModelSpace.fit` on ``n_images`` random probe images."""
    from modelspace import ModelSpace, ProbeSet, Runtime

    rng = np.random.default_rng(n_images)
    probe = ProbeSet.from_array(rng.integers(0, 256, (n_images, 3, probe_size, probe_size), dtype=np.uint8))
    with tempfile.TemporaryDirectory(prefix="modelspace-taskonomy-", dir=args.tmp) as store:
        space = ModelSpace(methods=list(METHODS), baselines=[], store=store,
                           runtime=Runtime(device=args.device, batch_size=args.batch_size), progress=not args.quiet)
        start = time.perf_counter()
        space.fit(specs, probe)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return seconds, _size(Path(store)), sorted({f.model for f in space.failures_})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10, 40], metavar="N",
                        help="probe image counts timed (one or two; default 10 40)")
    parser.add_argument("--target", type=int, default=1000, help="the paper's probe images (default 1000)")
    parser.add_argument("--models", type=int, default=20, help="the first M encoders of the shipped zoo (default 20)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward+backward pass (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--tmp", default=None, help="folder of the temporary stores (default: the system's)")
    parser.add_argument("--quick", action="store_true",
                        help="2 encoders at a 64² input, 2 and 4 images at probe size 64, target 8 (a smoke test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--append", type=Path, default=None, metavar="RESULTS",
                        help="also append the printed results to this file as its section 12 (benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    if not 1 <= len(args.images) <= 2 or min(args.images) < 2 or len(set(args.images)) != len(args.images):
        parser.error("--images: one or two different counts, each at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    with appended_section(args.append, "12. The seed paper's workload: Taskonomy encoders, three methods", "taskonomy.py",
                          markdown=True):
        _measure(args)
    return 0


def _measure(args: argparse.Namespace) -> None:
    from modelspace.models import load_zoo

    specs = [replace(s, pretrained=False) for s in load_zoo("taskonomy")]
    input_size, probe_size = 256, 256
    if args.quick:
        args.models, args.images, args.target, input_size, probe_size = 2, [2, 4], 8, 64, 64
        specs = [replace(s, input_size=input_size) for s in specs]
    specs = specs[:args.models]
    cells = f"{len(specs)} encoders × {{n}} images at {input_size}² × {len(METHODS)} methods"
    if args.append is None:  # appended, the section's heading says it
        print(f"# The seed paper's workload: {cells.format(n=args.target)}\n", flush=True)
    print(f"- device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}; "
          f"maps stored at probe size {probe_size}; command: `python {' '.join(sys.argv)}`", flush=True)
    if args.quick:
        print("- **smoke configuration (`--quick`)**: the figures only show that the script runs", flush=True)

    fit_once(specs[:1], 2, probe_size, args)  # untimed: the first fit of a process pays for imports and first calls
    rows = []
    for n in sorted(args.images):
        seconds, stored, failed = fit_once(specs, n, probe_size, args)
        rows.append((n, seconds, stored))
        print(f"- measured: {cells.format(n=n)}: {fmt_s(seconds)} end to end, store {fmt_bytes(stored)}"
              + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    if len(rows) == 2:
        (n1, t1, s1), (n2, t2, s2) = rows
        per_image, fixed = (t2 - t1) / (n2 - n1), t1 - (t2 - t1) / (n2 - n1) * n1
        total, stored = fixed + per_image * args.target, s2 / n2 * args.target
        how = (f"extrapolated: the line through the two measurements, T(N) = {fmt_s(fixed)} + {fmt_s(per_image)} · N "
               f"({fmt_s(per_image / len(specs))} per model-image), at N = {args.target}")
    else:
        (n, total, stored), = rows
        how = "measured" if n == args.target else f"scaled from N = {n} in proportion (no fixed cost separated)"
        total, stored = total / n * args.target, stored / n * args.target
    print(f"\n**{cells.format(n=args.target)}: {fmt_s(total)} ({total / 3600:.2f} h) on {args.device}**, "
          f"{how}; store {fmt_bytes(stored)}.", flush=True)
    print(f"Ratio to the paper's about 20 GPU hours (one Quadro P5000): **{total / PAPER_SECONDS:.3f}**.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
