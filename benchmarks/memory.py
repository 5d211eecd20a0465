"""Peak memory of `modelspace run`, and the time of its reruns, for the code before and the code now,
side by side on the same inputs.

    git worktree add /work/wt-before c8459ab                    # the code before, once
    .venv-vision/bin/python benchmarks/memory.py --before /work/wt-before/src
    .venv-vision/bin/python benchmarks/memory.py --before /work/wt-before/src --append benchmarks/RESULTS.md

Every run is `modelspace run ZOO PROBE` (the paper's three methods and DDS, with the report) in a
subprocess of its own, with PYTHONPATH on one variant's sources: "before" (`--before`, a checkout of
another commit) or "now" (this checkout). For each zoo, each variant runs three times on a store of
its own: a fresh run (every map and activation computed), a rerun with nothing new, and a rerun after
one model was added to the zoo. A run's peak memory is its process's peak resident set
(``ru_maxrss``); while it runs, a thread samples the resident set every 5 ms and keeps the peak of
each step (the maps, the baselines' activations, the affinities, the confidence, saving, the
report), after handing freed memory back to the system at the start of the step (``malloc_trim``),
so that a step is not charged with what an earlier one left in the allocator.

The zoos: "6" is six timm and torchvision models at 224² (random weights, ``pretrained = false``),
ResNet-50 among them; "50" is fifty of timm's smallest test networks (three architectures, each
copy with weights of its own seed: ``benchmarks/memory_nets.py``), also at 224². The probe set is
96 crops of scikit-image's photographs at 224² (`world.photos`). It needs timm, torchvision and
scikit-image: the vision environment of DEVELOPERS.md. Without ``--before`` only "now" runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SIX = [("resnet50", "timm:resnet50"), ("effnet_b0", "timm:efficientnet_b0"), ("vit_t", "timm:vit_tiny_patch16_224"),
       ("convnext_atto", "timm:convnext_atto"), ("r18_tv", "torchvision:resnet18"),
       ("mnv3_tv", "torchvision:mobilenet_v3_large")]
SIX_ADDED = ("mnv3s_timm", "timm:mobilenetv3_small_100")
#: timm's test networks and the module whose output is R
TINY = [("test_resnet", "layer4"), ("test_convnext", "stages"), ("test_efficientnet", "bn2")]
STEPS = ["maps", "baselines", "affinity", "confidence", "save", "report"]


def zoo_six(extra: bool) -> str:
    models = SIX + ([SIX_ADDED] if extra else [])
    return "".join(f'[[model]]\nname = "{n}"\nsource = "{s}"\npretrained = false\n\n' for n, s in models)


def zoo_tiny(n: int) -> str:
    out = []
    for i in range(n):
        arch, encoder = TINY[i % len(TINY)]
        out.append(f'[[model]]\nname = "{arch}_{i}"\nsource = "python:memory_nets:seeded"\n'
                   f'kwargs = {{ arch = "{arch}", seed = {i} }}\nencoder = "{encoder}"\ninput_size = 224\n\n')
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=None, help="src folder of the code to compare against")
    parser.add_argument("--zoos", nargs="+", default=["6", "50"], choices=["6", "50"])
    parser.add_argument("--images", type=int, nargs="+", default=[96], metavar="N",
                        help="probe images, one number for every zoo or one per zoo (default 96)")
    parser.add_argument("--work", default=None, help="folder for zoos, probe and stores (default: a temporary one)")
    parser.add_argument("--append", type=Path, default=None, metavar="RESULTS",
                        help="also append the printed results to this file as its section 11 (benchmarks/RESULTS.md)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke configuration: zoo 50 cut to 3 of its networks, 2 probe images (about a minute; "
                             "the figures mean nothing)")
    args = parser.parse_args()
    if args.quick:
        args.zoos, args.images = ["50"], [2]
    from harness import appended_section  # the driver's only: a run's child process imports no more than it needs

    title = "11. Peak memory and reruns of `modelspace run`" + (", before and now" if args.before else "")
    with appended_section(args.append, title, "memory.py"):
        _measure(args)


def _measure(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="modelspace-memory-"))
    images = dict(zip(args.zoos, args.images * len(args.zoos) if len(args.images) == 1 else args.images))
    (work / "memory_nets.py").write_text((HERE / "memory_nets.py").read_text())
    variants = {"before": Path(args.before).resolve()} if args.before else {}
    variants["now"] = SRC
    print("variants: " + ", ".join(f"{k} = {_commit(v)} ({v})" for k, v in variants.items()), flush=True)
    for zoo in args.zoos:
        probe = _probe(work / f"probe{images[zoo]}", images[zoo])
        tiny = 3 if args.quick else 50
        texts = (zoo_six(False), zoo_six(True)) if zoo == "6" else (zoo_tiny(tiny), zoo_tiny(tiny + 1))
        n_models = len(SIX) if zoo == "6" else tiny
        rows: dict[str, dict[str, dict]] = {}
        for what in ("fresh", "rerun", "added"):
            (work / f"zoo{zoo}.toml").write_text(texts[what == "added"])
            for variant, src in variants.items():
                out = work / f"{variant}-{zoo}"
                rows.setdefault(variant, {})[what] = _run(src, work, [
                    "run", f"zoo{zoo}.toml", str(probe), "--out", str(out), "--store", str(out / "store"), "--quiet"])
                r = rows[variant][what]
                print(f"  zoo {zoo}, {variant:6s} {what:6s}: {r['wall_s']:7.1f} s, peak {_gb(r['peak_rss'])}",
                      file=sys.stderr, flush=True)
        _table(n_models, images[zoo], rows)


def _table(n_models: int, n_images: int, rows: dict) -> None:
    variants = list(rows)
    head = "".join(f"{v:>12s}" for v in variants) + ("   now/before" if len(variants) == 2 else "")
    print(f"\n{n_models} models × {n_images} probe images at 224²{'':{14 - len(str(n_images))}s}{head}")

    def line(label: str, values: list[float], fmt) -> None:
        ratio = f"   {values[-1] / values[0]:9.2f}×" if len(values) == 2 and values[0] else ""
        print(f"  {label:40s}" + "".join(f"{fmt(v):>12s}" for v in values) + ratio)

    line("peak memory, fresh run", [rows[v]["fresh"]["peak_rss"] for v in variants], _gb)
    for step in STEPS:
        line(f"  peak during {step}", [rows[v]["fresh"]["steps"].get(step, 0) for v in variants], _gb)
    line("time, fresh run", [rows[v]["fresh"]["wall_s"] for v in variants], lambda s: f"{s:.1f} s")
    line("time, rerun with nothing new", [rows[v]["rerun"]["wall_s"] for v in variants], lambda s: f"{s:.1f} s")
    line("time, rerun after adding one model", [rows[v]["added"]["wall_s"] for v in variants], lambda s: f"{s:.1f} s")
    line("peak memory, rerun with nothing new", [rows[v]["rerun"]["peak_rss"] for v in variants], _gb)
    print(flush=True)


def _commit(src: Path) -> str:
    """The commit of the checkout that ``src`` is in, with ``+`` when its tracked files are changed."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(src), *argv], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB"


def _probe(folder: Path, n: int) -> Path:
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(SRC))
    from modelspace.world.photos import photo_batch

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(photo_batch(n, 0, 224)):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _run(src: Path, work: Path, argv: list[str]) -> dict:
    """One `modelspace ARGV` in a subprocess on `src`'s code, in `work`: its wall time, peak and step peaks."""
    report = work / "child.json"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{work}"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(report), *argv], cwd=work, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())


def _step_places(cli, space) -> dict[str, list[tuple[object, str]]]:
    """Each step's label → the functions that run it, in any variant's code (the report moved from the CLI
    into `ModelSpace.save` after c8459ab; a step found inside another, the report in save, is its own)."""
    model_space = space.ModelSpace
    return {"maps": [(model_space, "_embed")], "baselines": [(model_space, "_prepare_baselines")],
            "affinity": [(model_space, "_assemble")], "confidence": [(model_space, "_judge")],
            "save": [(model_space, "save")], "report": [(cli, "_write_page"), (model_space, "_write_report")]}


def _child(report: str, argv: list[str]) -> None:
    """Run `modelspace ARGV` here, sampling the resident set per step (see the module docstring)."""
    import ctypes
    import resource
    import threading

    libc = ctypes.CDLL("libc.so.6")
    page = os.sysconf("SC_PAGE_SIZE")
    steps: dict[str, int] = {}
    current = ["start"]

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    def sample() -> None:
        while True:
            r, step = rss(), current[0]
            steps[step] = max(steps.get(step, 0), r)
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    from modelspace import cli, space

    def step(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapped(*a, **k):
            outer = current[0]  # the baselines run inside a model's step, under their own label
            libc.malloc_trim(0)
            current[0] = label
            try:
                return inner(*a, **k)
            finally:
                current[0] = outer

        setattr(owner, name, wrapped)

    for label, places in _step_places(cli, space).items():
        found = [(owner, name) for owner, name in places if hasattr(owner, name)]
        if not found:  # the code moved: a step measured nowhere would read as a peak of 0
            raise SystemExit(f"memory.py: step {label!r}: none of {[name for _, name in places]} is in this code")
        for owner, name in found:
            step(owner, name, label)
    start = time.perf_counter()
    code = cli.main(argv)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"modelspace {' '.join(argv)} exited with {code}")
    Path(report).write_text(json.dumps({"wall_s": wall, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        * 1024, "steps": steps}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
    else:
        main()
